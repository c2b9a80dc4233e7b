"""Model organisms with known ground truth (clean and backdoored checkpoints), built on demand.

Organisms are built into a cache directory (see :func:`scanner.zoo.paths.zoo_dir`), never into git.
The manifest that holds the ground truth lives beside the model folders, not inside them, so a scan
of a model folder cannot read it.
"""
