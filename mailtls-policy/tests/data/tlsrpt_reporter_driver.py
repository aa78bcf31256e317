# Drives sys4's tlsrpt-reporter (PyPI) in-process: feeds collectd datagrams for
# example.org (N ok, M certificate-expired) and example.net (K starttls failures),
# rolls the day over, lets reportd fetch and build its reports and writes each
# as DIR/DOMAIN.json.gz. Used by tests/tlsrpt_received.rs.
import sys, json, sqlite3, logging, gzip
from tlsrpt_reporter import tlsrpt as t
d = sys.argv[1]
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
db = f"sqlite://{d}/collectd.sqlite"
cc = {k: v["default"] for k, v in t.options_collectd.items()}
cc.update(storage=db)
col = t.TLSRPTCollectdSQLite(db, t.ConfigCollectd(**cc))
pr = "v=TLSRPTv1; rua=mailto:tlsrpt@example.org"
sts = {"policy-type": 2, "policy-string": ["version: STSv1", "mode: enforce", "mx: mx.example.org", "max_age: 604800"],
       "policy-domain": "example.org", "mx-host": ["mx.example.org"]}
for _ in range(int(sys.argv[2])):
    col.add_datagram({"dpv": "1", "d": "example.org", "pr": pr, "policies": [dict(sts, f=0, t=0)]})
for _ in range(int(sys.argv[3])):
    col.add_datagram({"dpv": "1", "d": "example.org", "pr": pr, "policies": [dict(sts, f=1, t=1, **{
        "failure-details": [{"c": 204, "n": "mx.example.org", "r": "192.0.2.25", "s": "192.0.2.1"}]})]})
for _ in range(int(sys.argv[4])):
    col.add_datagram({"dpv": "1", "d": "example.net", "pr": "v=TLSRPTv1; rua=https://r.example.net/t",
                      "policies": [{"policy-type": 9, "policy-domain": "example.net", "f": 1, "t": 1,
                                    "failure-details": [{"c": 201, "n": "mx.example.net", "h": "mx.example.net"}]}]})
col.switch_to_next_day(t.RolloverReason.MANUALLYINDUCED)
rc = {k: v["default"] for k, v in t.options_reportd.items()}
rc.update(dbname=f"{d}/reportd.sqlite", fetchers=f"tlsrpt-fetcher --storage {db}",
          organization_name="sys4 tlsrpt-reporter test", contact_info="mailto:tlsrpt@sender.example",
          sender_address="tlsrpt@sender.example")
rep = t.TLSRPTReportd(t.ConfigReportd(**rc))
rep.check_day(); rep.collect_domains(); rep.fetch_data(); rep.create_reports()
con = sqlite3.connect(f"{d}/reportd.sqlite")
n = 0
for (dom, report) in con.execute("SELECT domain, report FROM reports"):
    n += 1
    open(f"{d}/{dom}.json.gz", "wb").write(gzip.compress(report.encode()))
print(n)
