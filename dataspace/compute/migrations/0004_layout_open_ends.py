"""Stores built before quantile buckets had open ends: mark those ends open, so the column's
extremes (the outer quantile edges) stop being shown. The provider's own edges stay as they are."""

from typing import Any

from django.db import migrations


def open_quantile_ends(apps: Any, schema_editor: Any) -> None:
    EncryptedStore = apps.get_model("compute", "EncryptedStore")
    Ingest = apps.get_model("catalog", "Ingest")
    for store in EncryptedStore.objects.all():
        if not store.layout:
            continue
        ingest = Ingest.objects.filter(dataset_id=store.dataset_id).first()
        encryption = ((ingest.metadata or {}).get("encryption") or {}) if ingest else {}
        chosen = set((encryption.get("buckets") or {}).keys())
        changed = False
        for column in store.layout.get("columns", []):
            if column.get("bucket_edges") and "open_ends" not in column:
                column["open_ends"] = column["name"] not in chosen
                changed = True
        if changed:
            store.save(update_fields=["layout"])


class Migration(migrations.Migration):
    dependencies = [
        ("compute", "0003_job_release_attempts"),
        ("catalog", "0001_initial"),
    ]

    operations = [migrations.RunPython(open_quantile_ends, migrations.RunPython.noop)]
