"""liftlab synth: composite real foreground cut-outs over real backgrounds into training sets.

Entry points: the ``synth`` CLI (:mod:`synth.cli`) and :func:`synth.build.build`.
"""

__version__ = "0.1.0"
