"""DISB (the REEF lab's benchmark): workloads A-E and custom ones under every scheduling policy,
side by side in one run; metrics, a table, a results JSON and the paper's figures.

`reef bench disb A|B|C|D|E|all|FILE ...`; see docs/reproducing.md.
"""
