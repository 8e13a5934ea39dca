"""Schedule tuning for the compiler's kernels (``reef tune``), one job per module:

- ``tasks``: a model -> its distinct PrimFuncs (the same Relax pipeline the compiler runs,
  stopped before dlight), weighted by profiled time;
- ``space``: candidate schedules from MetaSchedule's CUDA design space (random sampling of
  its decisions) plus the default (dlight) schedule as the baseline;
- ``export``: candidates -> a measurement bundle (cubins + ``index.json``);
- ``bundle``: the bundle's index schema, read and checked without TVM;
- ``measure``: times a bundle on a GPU through reef_rocm.gpu only (no TVM import);
- ``database``: the tuning database (TVM's JSON database layout) and ``import`` of timings;
- ``cli``: ``reef tune`` (in-place and batch modes).

See docs/tuning.md.
"""
