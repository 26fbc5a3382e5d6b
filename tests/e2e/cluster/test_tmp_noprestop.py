import json, time, signal
from . import test_cluster as tc

_orig = tc.manifest
def manifest(**kw):
    doc = json.loads(_orig(**kw))
    del doc["items"][0]["spec"]["template"]["spec"]["containers"][0]["lifecycle"]
    return json.dumps(doc)
tc.manifest = manifest
tc.CURL_LOOP = tc.CURL_LOOP.replace("failures.append(repr(exc))", "failures.append('%.2f %r' % (time.time(), exc))")

def test_diag(cluster, namespace):
    ip = tc.deploy(cluster, namespace)
    tc.wait_scaled(cluster, namespace, 3)
    watch = cluster.popen(str(tc.KUBECTL), "--kubeconfig", str(cluster.kubeconfig), "-n", namespace, "get", "endpointslices,pods", "-w", "-o", "json", "--output-watch-events")
    loop = cluster.popen(str(tc.PYTHON), "-c", tc.CURL_LOOP, f"http://{ip}/")
    time.sleep(1)
    print("set env at %.2f" % time.time())
    cluster.kubectl("-n", namespace, "set", "env", f"deployment/{tc.APP}", "VERSION=2")
    tc.rollout(cluster, namespace)
    print("rollout done %.2f" % time.time())
    time.sleep(3)
    loop.send_signal(signal.SIGTERM)
    out, err = loop.communicate(timeout=10)
    watch.terminate(); wout, _ = watch.communicate()
    open("/tmp/kt-diag-watch.json", "w").write(wout)
    print(out)
    print(cluster.run("iptables-save", "-t", "nat").stdout[-3000:])
    assert False
