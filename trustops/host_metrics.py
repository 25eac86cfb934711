"""Writes host facts as Prometheus textfile metrics: whether UFW is active, and when each given
certificate expires. Usage: trustops-host-metrics OUT.prom [CERT ...]
`trustops-host-metrics updates OUT.prom ...` writes pending updates instead (trustops.pending_updates:
its own hourly timer, since it may refresh apt's lists)."""
import datetime as dt
import os
import subprocess
import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["updates"]:
        from trustops import pending_updates

        return pending_updates.main(args[1:])
    if not args:
        print("usage: trustops-host-metrics OUT.prom [CERT ...] | updates OUT.prom [--help]", file=sys.stderr)
        return 2
    out, certs = args[0], args[1:]
    ufw = subprocess.run(["ufw", "status"], capture_output=True, text=True)
    lines = ["# HELP trustops_ufw_active 1 when UFW is enabled and filtering.", "# TYPE trustops_ufw_active gauge",
             f"trustops_ufw_active {int('Status: active' in ufw.stdout)}",
             "# HELP trustops_tls_cert_expiry_timestamp_seconds When the certificate's notAfter falls.",
             "# TYPE trustops_tls_cert_expiry_timestamp_seconds gauge",
             "# HELP trustops_tls_cert_readable 0 when a watched certificate is missing or unreadable.",
             "# TYPE trustops_tls_cert_readable gauge"]
    for path in certs:
        p = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", path], capture_output=True, text=True)
        ok = p.returncode == 0 and p.stdout.startswith("notAfter=")
        lines.append(f'trustops_tls_cert_readable{{path="{path}"}} {int(ok)}')
        if ok:
            when = dt.datetime.strptime(p.stdout.strip()[9:], "%b %d %H:%M:%S %Y %Z").replace(tzinfo=dt.timezone.utc)
            lines.append(f'trustops_tls_cert_expiry_timestamp_seconds{{path="{path}"}} {int(when.timestamp())}')
    tmp = f"{out}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
