"""Results as pandas DataFrames: a group-by as one row per category, a regression as a
coefficient table with its 95% error bounds, a covariance as a matrix, scalars as one row."""

from __future__ import annotations

from typing import Any


def to_frame(job: Any) -> Any:
    import pandas as pd

    result, bounds = job.result, job.error_bounds
    if result is None:
        return pd.DataFrame()
    if job.operation == "group_by":
        frame = pd.DataFrame.from_dict(result["groups"], orient="index")
        frame.index.name = job.params.get("by", "group")
        if isinstance(bounds, dict) and isinstance(bounds.get("groups"), dict):
            errors = pd.DataFrame.from_dict(bounds["groups"], orient="index").add_suffix("_error_95")
            frame = frame.join(errors)
        return frame.sort_index()
    if job.operation == "linear_regression":
        names = ["intercept", *result["coefficients"].keys()]
        estimates = [result["intercept"], *result["coefficients"].values()]
        frame = pd.DataFrame({"term": names, "estimate": estimates}).set_index("term")
        if isinstance(bounds, dict) and bounds.get("intercept") is not None:
            per_feature = bounds.get("coefficients") or {}
            errs = [bounds.get("intercept"), *(per_feature.get(n) for n in names[1:])]
            frame["error_95"] = errs
            frame["lower"] = frame["estimate"] - frame["error_95"].astype(float)
            frame["upper"] = frame["estimate"] + frame["error_95"].astype(float)
        frame.attrs["count"] = result.get("count")
        return frame
    if job.operation == "covariance":
        return pd.DataFrame(result["matrix"], index=result["columns"], columns=result["columns"])
    if job.operation == "histogram" and isinstance(result, dict):
        return pd.DataFrame({k: v for k, v in result.items() if isinstance(v, list)})
    frame = pd.DataFrame([result])
    if isinstance(bounds, dict):
        for name, value in bounds.items():
            if value is not None and not isinstance(value, dict | list):
                frame[f"{name}_error_95"] = value
    return frame
