"""The `hfr_verification` metric folder; load it with `evaluate.load(hfr_hf.metrics.HFR_VERIFICATION)`."""
