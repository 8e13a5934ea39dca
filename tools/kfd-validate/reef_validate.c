// SPDX-License-Identifier: MIT
/*
 * Hardware validation of the REEF kfd patch (run by tools/validate-kfd-patch.sh on an
 * AMD Instinct GPU with the patched amdgpu loaded). Plain HSA, so the ring address that
 * REEF_KFD_IOC_RESET_QUEUES takes is known (hsa_queue_t.base_address, the ring ROCr gave
 * to AMDKFD_IOC_CREATE_QUEUE).
 *
 *   reef_validate victim CODE_OBJECT ITERS REPS
 *       runs REPS dispatches of `spin` one after another and checks every result; prints
 *       "READY" once the first is submitted and "VICTIM PASS"/"VICTIM FAIL" at the end.
 *   reef_validate attacker CODE_OBJECT ITERS GPU_ID process|queues
 *       process: three long dispatches on one queue, RESET_QUEUES with F_PROCESS while the
 *       first runs; queues: a long dispatch on a BE queue and on an RT queue, RESET_QUEUES
 *       of the BE queue only; the RT result must stay correct. Then, in both, the dropped
 *       packets must never run and the reset queue must run a new dispatch correctly.
 *
 * Checks are on results, never on timings; latencies are printed for information.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <hsa/hsa.h>
#include <hsa/hsa_ext_amd.h>
#include <linux/reef_kfd.h>

#define WG 256			/* spin.hip's work-group size */
#define N_ITEMS (WG * 1024)	/* work-items per dispatch */
#define LCG_A 1664525u
#define LCG_C 1013904223u

struct ctx {
	hsa_agent_t gpu, cpu;
	hsa_amd_memory_pool_t pool;	/* fine-grained system memory */
	int have_pool;
	uint64_t kobj;
	uint32_t kernarg_size, group_size, private_size;
};

static int failures;

#define CHECK(call) do { hsa_status_t s_ = (call); if (s_ != HSA_STATUS_SUCCESS) { \
	const char *m_; hsa_status_string(s_, &m_); \
	fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call, m_); exit(2); } } while (0)

static void expect(int ok, const char *what)
{
	printf("%s: %s\n", ok ? "ok  " : "FAIL", what);
	if (!ok)
		failures++;
}

static double now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

/* x after n LCG steps, in O(log n): compose the affine map x -> a*x + c with itself */
static uint32_t lcg_jump(uint32_t x, uint32_t n)
{
	uint32_t a = LCG_A, c = LCG_C, ra = 1, rc = 0;

	while (n) {
		if (n & 1) {
			ra = ra * a;
			rc = rc * a + c;
		}
		c = c * (a + 1);
		a = a * a;
		n >>= 1;
	}
	return ra * x + rc;
}

static uint32_t expected(uint32_t gid, uint32_t iters, uint32_t seed)
{
	return lcg_jump(seed ^ (gid * 2654435761u), iters);
}

/* results that are correct, out of N_ITEMS */
static unsigned int count_correct(const uint32_t *out, uint32_t iters, uint32_t seed)
{
	unsigned int i, n = 0;

	for (i = 0; i < N_ITEMS; i++)
		n += out[i] == expected(i, iters, seed);
	return n;
}

static hsa_status_t find_agents(hsa_agent_t agent, void *data)
{
	struct ctx *c = data;
	hsa_device_type_t type;

	CHECK(hsa_agent_get_info(agent, HSA_AGENT_INFO_DEVICE, &type));
	if (type == HSA_DEVICE_TYPE_GPU && !c->gpu.handle)
		c->gpu = agent;
	if (type == HSA_DEVICE_TYPE_CPU && !c->cpu.handle)
		c->cpu = agent;
	return HSA_STATUS_SUCCESS;
}

static hsa_status_t find_pool(hsa_amd_memory_pool_t pool, void *data)
{
	struct ctx *c = data;
	hsa_amd_segment_t seg;
	uint32_t flags;
	bool alloc;

	CHECK(hsa_amd_memory_pool_get_info(pool, HSA_AMD_MEMORY_POOL_INFO_SEGMENT, &seg));
	if (seg != HSA_AMD_SEGMENT_GLOBAL)
		return HSA_STATUS_SUCCESS;
	CHECK(hsa_amd_memory_pool_get_info(pool, HSA_AMD_MEMORY_POOL_INFO_GLOBAL_FLAGS, &flags));
	CHECK(hsa_amd_memory_pool_get_info(pool, HSA_AMD_MEMORY_POOL_INFO_RUNTIME_ALLOC_ALLOWED,
					   &alloc));
	if (alloc && (flags & HSA_AMD_MEMORY_POOL_GLOBAL_FLAG_FINE_GRAINED) && !c->have_pool) {
		c->pool = pool;
		c->have_pool = 1;
	}
	return HSA_STATUS_SUCCESS;
}

static void *alloc_shared(struct ctx *c, size_t size)
{
	void *p;

	CHECK(hsa_amd_memory_pool_allocate(c->pool, size, 0, &p));
	CHECK(hsa_amd_agents_allow_access(1, &c->gpu, NULL, p));
	memset(p, 0, size);
	return p;
}

static void setup(struct ctx *c, const char *code_object)
{
	hsa_code_object_reader_t reader;
	hsa_executable_symbol_t sym;
	hsa_executable_t exe;
	FILE *f;
	long size;
	char *buf;

	memset(c, 0, sizeof(*c));
	CHECK(hsa_init());
	CHECK(hsa_iterate_agents(find_agents, c));
	if (!c->gpu.handle || !c->cpu.handle) {
		fprintf(stderr, "no GPU or CPU agent\n");
		exit(2);
	}
	CHECK(hsa_amd_agent_iterate_memory_pools(c->cpu, find_pool, c));
	if (!c->have_pool) {
		fprintf(stderr, "no fine-grained system memory pool\n");
		exit(2);
	}
	f = fopen(code_object, "rb");
	if (!f) {
		perror(code_object);
		exit(2);
	}
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	rewind(f);
	buf = malloc(size);
	if (!buf || fread(buf, 1, size, f) != (size_t)size) {
		fprintf(stderr, "cannot read %s\n", code_object);
		exit(2);
	}
	fclose(f);
	CHECK(hsa_code_object_reader_create_from_memory(buf, size, &reader));
	CHECK(hsa_executable_create_alt(HSA_PROFILE_FULL, HSA_DEFAULT_FLOAT_ROUNDING_MODE_DEFAULT,
					NULL, &exe));
	CHECK(hsa_executable_load_agent_code_object(exe, c->gpu, reader, NULL, NULL));
	CHECK(hsa_executable_freeze(exe, NULL));
	CHECK(hsa_executable_get_symbol_by_name(exe, "spin.kd", &c->gpu, &sym));
	CHECK(hsa_executable_symbol_get_info(sym, HSA_EXECUTABLE_SYMBOL_INFO_KERNEL_OBJECT,
					     &c->kobj));
	CHECK(hsa_executable_symbol_get_info(
		sym, HSA_EXECUTABLE_SYMBOL_INFO_KERNEL_KERNARG_SEGMENT_SIZE, &c->kernarg_size));
	CHECK(hsa_executable_symbol_get_info(
		sym, HSA_EXECUTABLE_SYMBOL_INFO_KERNEL_GROUP_SEGMENT_SIZE, &c->group_size));
	CHECK(hsa_executable_symbol_get_info(
		sym, HSA_EXECUTABLE_SYMBOL_INFO_KERNEL_PRIVATE_SEGMENT_SIZE, &c->private_size));
}

static hsa_queue_t *make_queue(struct ctx *c)
{
	hsa_queue_t *q;

	CHECK(hsa_queue_create(c->gpu, 1024, HSA_QUEUE_TYPE_SINGLE, NULL, NULL, UINT32_MAX,
			       UINT32_MAX, &q));
	return q;
}

struct job {
	uint32_t *out;
	hsa_signal_t done;
	uint32_t iters, seed;
};

static void submit(struct ctx *c, hsa_queue_t *q, struct job *j, uint32_t iters,
		   uint32_t seed)
{
	hsa_kernel_dispatch_packet_t *pkt;
	struct { uint32_t *out; uint32_t iters; uint32_t seed; } *args;
	uint64_t idx;
	uint16_t header;

	j->out = alloc_shared(c, N_ITEMS * sizeof(uint32_t));
	j->iters = iters;
	j->seed = seed;
	CHECK(hsa_signal_create(1, 0, NULL, &j->done));
	/* zeroed hidden arguments: spin uses neither blockDim nor any implicit argument */
	args = alloc_shared(c, c->kernarg_size < sizeof(*args) ? sizeof(*args) : c->kernarg_size);
	args->out = j->out;
	args->iters = iters;
	args->seed = seed;

	idx = hsa_queue_add_write_index_scacq_screl(q, 1);
	while (idx - hsa_queue_load_read_index_scacquire(q) >= q->size)
		;
	pkt = (hsa_kernel_dispatch_packet_t *)q->base_address + (idx & (q->size - 1));
	memset((char *)pkt + 4, 0, sizeof(*pkt) - 4);
	pkt->workgroup_size_x = WG;
	pkt->workgroup_size_y = 1;
	pkt->workgroup_size_z = 1;
	pkt->grid_size_x = N_ITEMS;
	pkt->grid_size_y = 1;
	pkt->grid_size_z = 1;
	pkt->private_segment_size = c->private_size;
	pkt->group_segment_size = c->group_size;
	pkt->kernel_object = c->kobj;
	pkt->kernarg_address = args;
	pkt->completion_signal = j->done;
	header = HSA_PACKET_TYPE_KERNEL_DISPATCH << HSA_PACKET_HEADER_TYPE |
		 1 << HSA_PACKET_HEADER_BARRIER |
		 HSA_FENCE_SCOPE_SYSTEM << HSA_PACKET_HEADER_SCACQUIRE_FENCE_SCOPE |
		 HSA_FENCE_SCOPE_SYSTEM << HSA_PACKET_HEADER_SCRELEASE_FENCE_SCOPE;
	__atomic_store_n((uint32_t *)pkt,
			 header | (uint32_t)(1 << HSA_KERNEL_DISPATCH_PACKET_SETUP_DIMENSIONS) << 16,
			 __ATOMIC_RELEASE);
	hsa_signal_store_screlease(q->doorbell_signal, idx);
}

/* 1 if the job's signal reached 0 within timeout_ms */
static int wait_done(struct job *j, uint64_t timeout_ms)
{
	hsa_signal_value_t v;
	double end = now_us() + timeout_ms * 1e3;

	do {
		v = hsa_signal_wait_scacquire(j->done, HSA_SIGNAL_CONDITION_LT, 1, 1000000,
					      HSA_WAIT_STATE_BLOCKED);
		if (v < 1)
			return v == 0;
	} while (now_us() < end);
	return 0;
}

static int victim(struct ctx *c, uint32_t iters, int reps)
{
	hsa_queue_t *q = make_queue(c);
	struct job j;
	int i;

	for (i = 0; i < reps; i++) {
		double t0 = now_us();
		unsigned int good;

		submit(c, q, &j, iters, 1000 + i);
		if (i == 0) {
			printf("READY\n");
			fflush(stdout);
		}
		if (!wait_done(&j, 600000)) {
			expect(0, "victim dispatch completed");
			break;
		}
		good = count_correct(j.out, iters, 1000 + i);
		printf("victim dispatch %d: %u/%u correct, %.0f ms\n", i, good, N_ITEMS,
		       (now_us() - t0) / 1e3);
		expect(good == N_ITEMS, "victim results correct");
		fflush(stdout);
	}
	printf(failures ? "VICTIM FAIL\n" : "VICTIM PASS\n");
	return failures ? 1 : 0;
}

/* The user-space side of the reset contract (reef_kfd.h) for one queue */
static void after_reset(hsa_queue_t *q, uint64_t read_index, uint64_t dropped,
			struct job *jobs, int n_jobs)
{
	uint64_t i;
	int k;

	for (i = read_index; i < read_index + dropped; i++) {
		uint16_t *h = (uint16_t *)((hsa_kernel_dispatch_packet_t *)q->base_address +
					   (i & (q->size - 1)));
		__atomic_store_n(h, HSA_PACKET_TYPE_INVALID << HSA_PACKET_HEADER_TYPE,
				 __ATOMIC_RELEASE);
	}
	for (k = 0; k < n_jobs; k++)
		if (hsa_signal_load_scacquire(jobs[k].done) > 0)
			hsa_signal_store_screlease(jobs[k].done, -1);	/* error value */
}

static int reset(int kfd, uint32_t gpu_id, hsa_queue_t *be, int whole_process,
		 struct reef_kfd_reset_queues_args *a)
{
	double t0;
	int r;

	memset(a, 0, sizeof(*a));
	a->gpu_id = gpu_id;
	if (whole_process) {
		a->flags = REEF_KFD_RESET_F_PROCESS;
	} else {
		a->num_queues = 1;
		a->ring_base[0] = (uint64_t)(uintptr_t)be->base_address;
	}
	t0 = now_us();
	r = ioctl(kfd, REEF_KFD_IOC_RESET_QUEUES, a);
	printf("RESET_QUEUES(%s): rc %d (%s), %.1f us, mechanism %u, %u queues, "
	       "read_index %llu, dropped %llu\n", whole_process ? "process" : "BE queue",
	       r, r ? strerror(errno) : "ok", now_us() - t0, a->mechanism, a->num_queues,
	       (unsigned long long)a->read_index[0], (unsigned long long)a->dropped[0]);
	return r;
}

static int attacker(struct ctx *c, uint32_t iters, uint32_t gpu_id, int whole_process)
{
	struct reef_kfd_reset_queues_args a;
	hsa_queue_t *be = make_queue(c), *rt = whole_process ? NULL : make_queue(c);
	struct job jobs[3], rtjob, again;
	unsigned int good;
	uint64_t rd, wr, wr_before;
	int kfd, k;

	kfd = open("/dev/kfd", O_RDWR | O_CLOEXEC);
	if (kfd < 0) {
		perror("/dev/kfd");
		return 2;
	}
	for (k = 0; k < 3; k++)
		submit(c, be, &jobs[k], iters, 2000 + k);
	if (rt)
		submit(c, rt, &rtjob, iters, 3000);
	usleep(300000);
	expect(hsa_signal_load_scacquire(jobs[0].done) == 1,
	       "BE dispatch still running when reset (else raise ITERS)");

	wr_before = hsa_queue_load_write_index_scacquire(be);
	if (reset(kfd, gpu_id, be, whole_process, &a)) {
		expect(0, "RESET_QUEUES succeeded");
		return 1;
	}
	rd = hsa_queue_load_read_index_scacquire(be);
	wr = hsa_queue_load_write_index_scacquire(be);
	expect(rd == wr, "BE write index equals read index after reset");
	if (!whole_process) {
		expect(a.read_index[0] == rd, "reported read index is the queue's");
		expect(a.dropped[0] == wr_before - rd, "reported dropped count is the queue's");
	}
	expect(wr_before - rd == 2, "the two waiting dispatches were dropped");
	after_reset(be, rd, wr_before - rd, jobs, 3);

	/* The dropped dispatches must never run: their buffers stay zero */
	usleep(2000000);
	for (k = 1; k < 3; k++)
		expect(count_correct(jobs[k].out, iters, 2000 + k) == 0 &&
		       jobs[k].out[0] == 0 && jobs[k].out[N_ITEMS - 1] == 0,
		       "dropped dispatch did not run");
	good = count_correct(jobs[0].out, iters, 2000);
	printf("reset dispatch: %u/%u results written (killed waves leave the rest)\n",
	       good, N_ITEMS);
	expect(good < N_ITEMS, "the running BE dispatch was cut short");

	if (rt) {
		expect(wait_done(&rtjob, 600000), "RT dispatch on the spared queue completed");
		good = count_correct(rtjob.out, iters, 3000);
		printf("RT dispatch: %u/%u correct\n", good, N_ITEMS);
		expect(good == N_ITEMS, "RT results correct (its waves survived the reset)");
	}

	/* The reset queue works again and starts at its read index */
	submit(c, be, &again, iters / 16 ? iters / 16 : 1, 4000);
	expect(wait_done(&again, 600000), "new dispatch on the reset queue completed");
	expect(count_correct(again.out, iters / 16 ? iters / 16 : 1, 4000) == N_ITEMS,
	       "new dispatch on the reset queue is correct");
	for (k = 1; k < 3; k++)
		expect(jobs[k].out[0] == 0, "dropped dispatch still never ran");

	printf(failures ? "ATTACKER FAIL\n" : "ATTACKER PASS\n");
	close(kfd);
	return failures ? 1 : 0;
}

/* The host reference itself: jump-ahead against plain stepping (needs no GPU) */
static int selftest(void)
{
	static const uint32_t n[] = { 0, 1, 2, 3, 7, 64, 1000, 65537, 1u << 20 };
	unsigned int i, k;

	for (i = 0; i < sizeof(n) / sizeof(n[0]); i++) {
		for (k = 0; k < 4; k++) {
			uint32_t x = 0x9e3779b9u * (k + 1), y = x, s;

			for (s = 0; s < n[i]; s++)
				y = y * LCG_A + LCG_C;
			expect(lcg_jump(x, n[i]) == y, "LCG jump-ahead equals stepping");
		}
	}
	printf(failures ? "SELFTEST FAIL\n" : "SELFTEST PASS\n");
	return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct ctx c;

	if (argc == 2 && !strcmp(argv[1], "selftest"))
		return selftest();

	if (argc == 5 && !strcmp(argv[1], "victim")) {
		setup(&c, argv[2]);
		return victim(&c, strtoul(argv[3], NULL, 0), atoi(argv[4]));
	}
	if (argc == 6 && !strcmp(argv[1], "attacker") &&
	    (!strcmp(argv[5], "process") || !strcmp(argv[5], "queues"))) {
		setup(&c, argv[2]);
		return attacker(&c, strtoul(argv[3], NULL, 0), strtoul(argv[4], NULL, 0),
				!strcmp(argv[5], "process"));
	}
	fprintf(stderr, "usage: %s selftest\n"
		"       %s victim CODE_OBJECT ITERS REPS\n"
		"       %s attacker CODE_OBJECT ITERS GPU_ID process|queues\n",
		argv[0], argv[0], argv[0]);
	return 2;
}
