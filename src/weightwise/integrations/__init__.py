"""Bridges to training frameworks, each an optional extra that nothing else in weightwise imports.

- :mod:`weightwise.integrations.lightning`: the rules of a ``LightningModule`` in a
  PyTorch Lightning ``Trainer`` (``pip install 'weightwise[lightning]'``).

Importing this package imports no framework; importing one of its modules needs that framework.
"""
