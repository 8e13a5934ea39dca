// C++ baseline for the launch-cost benchmark: the same cubin, kernel and arguments as the
// Python side, launched with cuLaunchKernel in a tight loop. Prints one JSON object.
// Build: nvcc -O2 -o launch_bench tools/launch_bench.cu -lcuda
#include <cuda.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CHECK(x)                                                              \
	do {                                                                  \
		CUresult r_ = (x);                                            \
		if (r_ != CUDA_SUCCESS) {                                     \
			const char *s_ = nullptr;                             \
			cuGetErrorString(r_, &s_);                            \
			fprintf(stderr, "%s failed: %s\n", #x, s_ ? s_ : "?"); \
			exit(1);                                              \
		}                                                             \
	} while (0)

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s CUBIN LAUNCHES REPEATS\n", argv[0]);
		return 2;
	}
	int launches = atoi(argv[2]), repeats = atoi(argv[3]);
	CUdevice dev;
	CUcontext ctx;
	CUmodule mod;
	CUfunction fn;
	CUstream stream;
	CUdeviceptr p;

	CHECK(cuInit(0));
	CHECK(cuDeviceGet(&dev, 0));
	CHECK(cuDevicePrimaryCtxRetain(&ctx, dev));
	CHECK(cuCtxSetCurrent(ctx));
	CHECK(cuModuleLoad(&mod, argv[1]));
	CHECK(cuModuleGetFunction(&fn, mod, "empty_kernel"));
	CHECK(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
	CHECK(cuMemAlloc(&p, 4));
	int n = 1;
	float alpha = 2.0f;
	void *params[] = {&p, &n, &alpha};
	std::vector<double> per_launch_us;

	for (int i = 0; i < 1000; i++) // warm-up
		CHECK(cuLaunchKernel(fn, 1, 1, 1, 32, 1, 1, 0, stream, params, nullptr));
	CHECK(cuStreamSynchronize(stream));
	for (int r = 0; r < repeats; r++) {
		auto t0 = std::chrono::steady_clock::now();
		for (int i = 0; i < launches; i++)
			CHECK(cuLaunchKernel(fn, 1, 1, 1, 32, 1, 1, 0, stream, params, nullptr));
		auto t1 = std::chrono::steady_clock::now();
		CHECK(cuStreamSynchronize(stream));
		per_launch_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count() /
					launches);
	}
	std::sort(per_launch_us.begin(), per_launch_us.end());
	printf("{\"median_us\": %.4f, \"min_us\": %.4f, \"max_us\": %.4f, \"repeats\": %d, "
	       "\"launches\": %d}\n",
	       per_launch_us[repeats / 2], per_launch_us.front(), per_launch_us.back(), repeats,
	       launches);
	return 0;
}
