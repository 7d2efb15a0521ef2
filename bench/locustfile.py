"""Catalogue readers for bench/load.py: a consumer listing the catalogue and opening datasets,
back to back (no think time), through the REST API with an API token."""

from __future__ import annotations

import os
import random

from locust import FastHttpUser, constant, task


class CatalogueReader(FastHttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        self.headers = {"Authorization": f"Token {os.environ['LOAD_TOKEN']}"}
        self.dataset_ids = os.environ["LOAD_DATASETS"].split(",")

    @task(3)
    def list_catalogue(self) -> None:
        self.client.get("/api/datasets/", headers=self.headers, name="GET /api/datasets/")

    @task(1)
    def open_dataset(self) -> None:
        dataset = random.choice(self.dataset_ids)
        self.client.get(f"/api/datasets/{dataset}/", headers=self.headers, name="GET /api/datasets/<id>/")
