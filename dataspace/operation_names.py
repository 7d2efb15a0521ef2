"""The names of the operations an offer can allow and a job can ask for.

A leaf module (it imports nothing of ours): the policies name operations without depending on
the engines that run them. ``dataspace.compute.he.operations`` implements exactly these (a test
holds the two together), and the chain sees each as the keccak of its name.
"""

from __future__ import annotations

import enum


class OperationName(enum.StrEnum):
    COUNT = "count"
    SUM = "sum"
    MEAN = "mean"
    VARIANCE = "variance"
    GROUP_BY = "group_by"
    HISTOGRAM = "histogram"
    COVARIANCE = "covariance"
    LINEAR_REGRESSION = "linear_regression"
    # ISSUE-13: a provider-approved algorithm run inside a TEE (the ``tee`` engine), not an HE operation.
    ALGORITHM = "algorithm"


# ISSUE-13: the operations the HE engine implements (every name but the TEE's).
HE_OPERATION_NAMES = frozenset(name for name in OperationName if name is not OperationName.ALGORITHM)
