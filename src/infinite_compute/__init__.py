"""The study of "Pre-training under infinite compute" as a package, in layers that import downwards only:

    runtime  <  science  <  study  <  data  <  model  <  outputs  <  cli

A module may import from its own folder and the folders to its left (tests/test_layers.py checks it).
cli/ is the command line the rules run (one module per rule file).
"""
