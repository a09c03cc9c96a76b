"""What this torch build offers the environment tests: the native libraries it reports."""

from __future__ import annotations

import torch

from audit.environment.native import mkl_report, onednn_report

HAS_MKL = torch.backends.mkl.is_available() and mkl_report() is not None
HAS_ONEDNN = torch.backends.mkldnn.is_available() and onednn_report() is not None
