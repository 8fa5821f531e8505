"""Deep-learning jobs: image, text and tabular classifiers trained with torch (one process, or
data-parallel workers under torch.distributed), written as ordinary model bundles.

Modules: ``params`` (the validated job configuration), ``inputs`` (frame -> tensors),
``models`` (the architectures), ``loop`` (the training loop, single or DDP), ``memory``
(measured activation memory), ``workers`` / ``worker`` (the data-parallel processes),
``job`` (the job body). torch is imported inside functions, so the service starts fast.
"""
