import dataclasses, time
import exporter.store as store
orig = store.SnapshotStore.publish
def torn(self, snapshot):
    if len(snapshot.families) > 1:
        orig(self, dataclasses.replace(snapshot, families=snapshot.families[:1]))
        time.sleep(0.002)
    orig(self, snapshot)
store.SnapshotStore.publish = torn
from test_properties import test_each_scrape_sees_one_polls_data_per_target_under_concurrent_polls as test_torn
