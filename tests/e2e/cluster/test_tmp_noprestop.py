import json
from . import test_cluster as tc

_orig = tc.manifest
def manifest(**kw):
    doc = json.loads(_orig(**kw))
    del doc["items"][0]["spec"]["template"]["spec"]["containers"][0]["lifecycle"]
    return json.dumps(doc)
tc.manifest = manifest
test_rolling = tc.test_rolling_update_loses_no_request_and_undo_restores
