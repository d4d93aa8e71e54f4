#!/usr/bin/env bash
# Install Princeton WordNet 3.0 for nltk (METEOR) into <venv>/nltk_data, offline from PyPI's view:
# the data comes from Debian's wordnet-base and wordnet-sense-index packages, unpacked with
# `dpkg -x` into a temporary folder (nothing is installed system-wide). nltk searches
# <venv>/nltk_data by default, so no NLTK_DATA setting is needed.
#
# Usage: bash scripts/install_wordnet.sh <venv>     (e.g. bash scripts/install_wordnet.sh .venv)
# Idempotent: exits at once when every file is already there. Needs apt-get (Debian/Ubuntu);
# runs `apt-get update` once if the package lists are missing and it is run as root.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 <venv>   (the virtual environment whose nltk should find WordNet)" >&2
    exit 2
fi
VENV="$1"
if [[ ! -d "$VENV" ]]; then
    echo "error: $VENV is not a folder; pass the virtual environment's path, e.g. .venv" >&2
    exit 2
fi
DEST="$(cd "$VENV" && pwd)/nltk_data/corpora/wordnet"
FILES=(adj.exc adv.exc noun.exc verb.exc cntlist.rev index.sense
       index.adj index.adv index.noun index.verb data.adj data.adv data.noun data.verb)

installed() {
    local f
    for f in "${FILES[@]}" lexnames; do
        [[ -s "$DEST/$f" ]] || return 1
    done
}

if installed; then
    echo "WordNet already installed in $DEST; nothing to do."
    exit 0
fi

SRC=/usr/share/wordnet
FROM="$SRC"
TMP=""
cleanup() { [[ -n "$TMP" ]] && rm -rf "$TMP"; }
trap cleanup EXIT

if ! ( for f in "${FILES[@]}"; do [[ -s "$SRC/$f" ]] || exit 1; done ); then
    command -v apt-get >/dev/null || { echo "error: apt-get not found; install Debian's" \
        "wordnet-base and wordnet-sense-index, or copy WordNet 3.0 files to $DEST" >&2; exit 1; }
    TMP="$(mktemp -d)"
    APT_OPTS=(-q)
    # as root, download as root (apt's _apt user cannot write into a private temp folder)
    [[ $(id -u) -eq 0 ]] && APT_OPTS+=(-o APT::Sandbox::User=root)
    echo "Downloading Debian packages wordnet-base and wordnet-sense-index into $TMP ..."
    if ! (cd "$TMP" && apt-get download "${APT_OPTS[@]}" wordnet-base wordnet-sense-index); then
        if [[ $(id -u) -ne 0 ]]; then
            echo "error: apt-get download failed; run 'sudo apt-get update' and retry" >&2
            exit 1
        fi
        echo "apt-get download failed; running apt-get update once and retrying ..."
        apt-get update -q
        (cd "$TMP" && apt-get download "${APT_OPTS[@]}" wordnet-base wordnet-sense-index)
    fi
    for deb in "$TMP"/*.deb; do
        dpkg -x "$deb" "$TMP/root"
    done
    SRC="$TMP/root/usr/share/wordnet"
    FROM="Debian packages wordnet-base + wordnet-sense-index"
fi

mkdir -p "$DEST"
for f in "${FILES[@]}"; do
    cp "$SRC/$f" "$DEST/$f"    # copies, not links: nltk rejects links leaving its data root
done

# lexnames is not shipped by any package; its 45 fixed lines come from lexnames(5WN).
names=(adj.all:3 adj.pert:3 adv.all:4 noun.Tops:1 noun.act:1 noun.animal:1 noun.artifact:1
       noun.attribute:1 noun.body:1 noun.cognition:1 noun.communication:1 noun.event:1
       noun.feeling:1 noun.food:1 noun.group:1 noun.location:1 noun.motive:1 noun.object:1
       noun.person:1 noun.phenomenon:1 noun.plant:1 noun.possession:1 noun.process:1
       noun.quantity:1 noun.relation:1 noun.shape:1 noun.state:1 noun.substance:1 noun.time:1
       verb.body:2 verb.change:2 verb.cognition:2 verb.communication:2 verb.competition:2
       verb.consumption:2 verb.contact:2 verb.creation:2 verb.emotion:2 verb.motion:2
       verb.perception:2 verb.possession:2 verb.social:2 verb.stative:2 verb.weather:2
       adj.ppl:3)
: > "$DEST/lexnames"
for i in "${!names[@]}"; do
    printf '%02d\t%s\t%s\n' "$i" "${names[$i]%%:*}" "${names[$i]##*:}" >> "$DEST/lexnames"
done

echo "Installed WordNet 3.0 (${#FILES[@]} files from $FROM, plus lexnames) into $DEST"
PY="$VENV/bin/python"
if [[ -x "$PY" ]] && "$PY" -c "import nltk" 2>/dev/null; then
    "$PY" - <<'PYCHECK'
from nltk.corpus import wordnet
from nltk.translate.meteor_score import meteor_score

ref = "It is a guide to action that ensures that the military will forever heed Party commands"
hyp = "It is a guide to action which ensures that the military always obeys the commands of the party"
print(f"check: nltk finds {len(wordnet.synsets('edema'))} synset(s) for 'edema'; "
      f"METEOR on nltk's documented example = {meteor_score([ref.split()], hyp.split()):.4f} "
      "(expected 0.6944)")
PYCHECK
fi
