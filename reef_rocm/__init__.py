"""reef_rocm: REEF-style real-time / best-effort GPU inference scheduling.

Pipeline: compiler -> codeobj -> runtime -> sched -> server/disb, with ``gpu`` as the one
device interface and ``rocm`` + ``kfd_patch/`` holding the AMD driver pieces.
"""

__version__ = "0.1.0"
