"""The papers' experiments, built on the core library :mod:`renyilib`.

==========================================  ====================================
``renyilib.experiments.config``             experiment profiles (``_config.yml``), seeds, devices, data root
``renyilib.experiments.io``                 atomic writes, checkpoints, config hashes, code version
``renyilib.experiments.data``               datasets (digits embedded; CIFAR, Tiny ImageNet, ...)
``renyilib.experiments.models``             architectures by name
``renyilib.experiments.train``              the training loop
``renyilib.experiments.zoo``                model zoos: grids, resumable runner, tables
``renyilib.experiments.zoo_measure``        measuring a zoo: cached Rényi profiles and baselines, exports
``renyilib.experiments.table1``             the Table 1 runner (methods × tasks × seeds)
``renyilib.experiments.parallel``           the worker-process pool of the runners
``renyilib.experiments.report``             the papermill driver of the book
``renyilib.experiments.cli``                the ``renyilib`` command
==========================================  ====================================

Nothing here is imported by ``import renyilib``.
"""
