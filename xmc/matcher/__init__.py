"""Matchers: score the K label clusters for an instance (g(x, k)) and keep each instance's top-b.

``xmc.matcher.transformer`` fine-tunes an encoder with a linear head (the paper's matcher);
``xmc.matcher.linear`` is the TF-IDF linear baseline. Submodules are imported on demand so that
importing one does not pull in the other's dependencies.
"""
