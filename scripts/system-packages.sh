#!/usr/bin/env bash
# Install the Debian packages the test suite talks to, when missing:
# Orthanc + its DICOMweb plugin (the real PACS), DCMTK and dicom3tools (reference tools), Chromium,
# OpenSSL (certificates for the TLS tests).
set -euo pipefail
declare -A probe=(
  [orthanc]=/usr/sbin/Orthanc
  [orthanc-dicomweb]=/usr/share/orthanc/plugins/libOrthancDicomWeb.so
  [dcmtk]=/usr/bin/findscu
  [dicom3tools]=/usr/bin/dciodvfy
  [chromium]=/usr/bin/chromium
  [openssl]=/usr/bin/openssl
)
missing=()
for pkg in orthanc orthanc-dicomweb dcmtk dicom3tools chromium openssl; do
  [ -e "${probe[$pkg]}" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "Missing Debian packages: ${missing[*]}" >&2
  echo "Install them as root:  apt-get update && apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "Installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The Debian package starts a system Orthanc on the default ports; we run our own per test.
if command -v systemctl >/dev/null 2>&1; then systemctl stop orthanc 2>/dev/null || true; fi
if [ -x /etc/init.d/orthanc ]; then /etc/init.d/orthanc stop >/dev/null 2>&1 || true; fi
