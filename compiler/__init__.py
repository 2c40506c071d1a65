"""losscc: compile loss specs (SymPy) into Numba kernels and LaTeX documentation."""
