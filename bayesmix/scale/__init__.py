"""Fits of linear mixed models to data in a Dask DataFrame (larger than memory).

The ML engine needs the data only through cross-products of ``[Z, X, y]``
(:mod:`bayesmix.ml.cross_products`), which are sums over rows: this layer reads a
Dask DataFrame twice, partition by partition, and hands the summed products to
the ML engine (:mod:`bayesmix.ml.products_fit`).

* :mod:`~bayesmix.scale.survey`: the first pass (missing values, types, every
  level) and the template design;
* :mod:`~bayesmix.scale.accumulate`: the second pass, each partition's products
  added up on the workers;
* :mod:`~bayesmix.scale.results`: :class:`DaskMLResult`, whose row-level outputs
  stay lazy on Dask.

May import: ``spec``, ``ml``, ``inference.distributed`` (the local cluster) and Dask
(lazily: importing this package does not import Dask).
"""
