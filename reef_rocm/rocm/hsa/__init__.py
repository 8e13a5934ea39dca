"""Userspace HSA queue manager: our own AQL queues, packets and signals on AMD GPUs.

Layers, bottom up (only ``_ffi`` touches ctypes and libhsa-runtime64):

* ``_ffi`` - structs, constants and prototypes of hsa.h / hsa_ext_amd.h (checked against
  the headers by a C probe), the release-ordered header store;
* ``runtime`` (init/shut down, agents), ``memory`` (device, kernarg and fine-grained host
  pools), ``signals``, ``queues`` (size, priority, CU mask), ``code_object`` (HSACO ->
  frozen executable -> kernel objects and segment sizes), ``kernargs`` (argument segments
  from the code object metadata);
* ``aql`` - the packet writer: dispatch and barrier-AND packets built in place, exact
  read/write-index accounting, the user-space half of the KFD queue-reset contract;
* ``cu_mask`` - CU masks for multi-XCC GPUs as amdkfd maps them.

``reef_rocm.gpu.hsa`` is the device backend over these. See docs/amd.md; nothing here has
run on AMD hardware yet (tools/validate-hsa.py is how it gets checked).
"""
