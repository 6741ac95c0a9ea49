from django.db import migrations

# Holdings are updated in place all the time (every redemption, transfer and expiry) and the
# updated column, quantity, is in no index: room on each page lets PostgreSQL do those as
# HOT updates, which touch no index. New pages get it; VACUUM FULL rewrites old ones.
SQL = "ALTER TABLE credits_holding SET (fillfactor = 80)"
REVERSE_SQL = "ALTER TABLE credits_holding RESET (fillfactor)"


class Migration(migrations.Migration):
    dependencies = [("credits", "0005_alerts")]

    operations = [migrations.RunSQL(SQL, REVERSE_SQL)]
