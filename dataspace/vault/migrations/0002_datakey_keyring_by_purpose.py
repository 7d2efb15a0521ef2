"""Each data key names the keyring whose root wraps it (issue 12), filled from its purpose."""

from django.db import migrations, models

PURPOSE_KEYRINGS = {"dataset": "data", "ckks-secret": "ckks", "wallet": "wallet", "receipt-key": "receipt"}


def keyring_from_purpose(apps, schema_editor):  # type: ignore[no-untyped-def]
    DataKey = apps.get_model("vault", "DataKey")
    for purpose, keyring in PURPOSE_KEYRINGS.items():
        DataKey.objects.filter(purpose=purpose).update(keyring=keyring)


class Migration(migrations.Migration):
    dependencies = [("vault", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="datakey",
            name="keyring",
            field=models.CharField(db_index=True, default="data", max_length=16),
        ),
        migrations.RunPython(keyring_from_purpose, migrations.RunPython.noop),
    ]
