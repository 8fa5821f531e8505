"""Parallel training building blocks that are not jobs themselves: the class-sharded classifier
layer (model parallelism over torch.distributed) and gradient boosting on Dask."""
