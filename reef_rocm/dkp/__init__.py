"""Dynamic kernel padding (DKP): run best-effort kernel blocks on the CUs a real-time kernel
leaves idle, in one launch (docs/dkp.md).

Pipeline: ``source`` (package kernels -> dispatcher bodies), ``build`` (bodies + dispatcher,
one code object per proxy class), ``proxy`` (which class covers two callees), ``split``
(which hardware CU ids run RT work), ``select`` (which BE kernel pads an RT kernel, from
profiles), ``launch`` (the padded launch on a device).
"""
