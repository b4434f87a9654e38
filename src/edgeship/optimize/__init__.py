"""Host-side optimization: distill, prune, export, quantize (the ``[optimize]`` extra, needs torch).

Nothing is imported here; import the stage you use, e.g. ``from edgeship.optimize.prune import prune``.
Runtime code never imports this package.
"""
