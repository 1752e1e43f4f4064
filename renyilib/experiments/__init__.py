"""The papers' experiments, built on the core library :mod:`renyilib`.

Nothing here is imported by ``import renyilib``; the core never imports this
package (``tests/test_layers.py``).

Infrastructure

* ``config`` — experiment profiles (``_config.yml``), seeds, devices, the data root
* ``io`` — atomic writes, checkpoints (``weights_only``), config hashes, the code version
* ``data``, ``splits`` — the paper's datasets (digits embedded; CIFAR-10, Tiny ImageNet, ...), validation splits
* ``models`` — the paper's architectures by name
* ``train`` — the one training loop (zoo runs and Table 1)
* ``zoo``, ``zoo_measure`` — model zoos: grids, a resumable runner, cached measurements, exports
* ``table1`` — the Table 1 runner (methods × tasks × seeds, ρ tuned on a validation split)
* ``parallel``, ``submit`` — worker processes; Slurm / local job arrays through submitit
* ``report``, ``summary``, ``prerequisites`` — the papermill driver, the book's summary tables,
  what a chapter needs before it runs
* ``cli`` — the ``renyilib`` command

One study module per chapter (each returns DataFrames; the notebook plots them)

* ``estimator_study`` — SLQ against exact spectra
* ``zoo_study``, ``spectrum_study``, ``correlation_study``, ``cifar_study`` — the correlation study
* ``rsam_study`` — RSAM and Table 1
* ``bounds_study`` — the paper's bounds and invariances
* ``random_labels``, ``trace_cost`` — Minimum Sharpness (Ibayashi et al.)
* ``replication_data``, ``replication_models``, ``adaptive_study`` — the adaptive-sharpness replication
* ``wen_li_ma`` — Wen, Li & Ma (2023): flat but not general
* ``figures`` — figures that draw the experiments' own tables
"""
