#!/bin/sh
# scripts/prepare-deen on a tiny hand-made dictd database (tests/data/
# deen-tiny.dict and .index): parallel outputs, the pairs it must keep and
# clean, the entries it must leave out, and a repeat run that changes nothing.
# Prints TAP.
set -u
: "${ET_SRCDIR:=.}"
script="$ET_SRCDIR/scripts/prepare-deen"
data="$ET_SRCDIR/tests/data"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tab=$(printf '\t')
. "$ET_SRCDIR/tests/tap.sh"
check() { if [ "$2" = 0 ]; then ok "$1"; else not_ok "$1" "$3"; fi; }

# pair DE EN: the two sentences sit on the same line of some split
pair() {
    for s in train valid test; do
        paste "$tmp/out/$s.de" "$tmp/out/$s.en" 2>/dev/null | grep -Fxq "$1$tab$2" && return 0
    done
    return 1
}
lines() { wc -l <"$1" | tr -d ' '; }

echo "1..13"

gzip -9nc "$data/deen-tiny.dict" >"$tmp/deen-tiny.dict.dz"
cp "$data/deen-tiny.index" "$tmp/deen-tiny.index"
"$script" -d "$tmp/deen-tiny.dict.dz" "$tmp/out" >"$tmp/log" 2>&1
rc=$?
check "runs on a gzipped dictd database" $rc "exit $rc: $(cat "$tmp/log")"

bad=0
msg=""
for s in train valid test; do
    for l in de en; do
        [ -f "$tmp/out/$s.$l" ] || { bad=1; msg="$msg missing $s.$l"; }
    done
    if [ "$bad" = 1 ] || [ "$(lines "$tmp/out/$s.de")" != "$(lines "$tmp/out/$s.en")" ]; then
        bad=1
        msg="$msg $s differs"
    fi
done
check "six files, the same line count in both languages of each split" $bad "$msg"

total=$(cat "$tmp/out"/*.de | wc -l | tr -d ' ')
[ "$total" = 14 ]
check "14 sentence pairs kept" $? "got $total"

for s in train valid test; do sort -u "$tmp/out/$s.en" >"$tmp/$s.en.sorted"; done
shared=$(cat "$tmp/train.en.sorted" "$tmp/valid.en.sorted" "$tmp/test.en.sorted" | sort | uniq -d | wc -l | tr -d ' ')
[ -s "$tmp/out/valid.de" ] && [ -s "$tmp/out/test.de" ] && [ "$shared" = 0 ]
check "valid and test are non-empty and share no English sentence with another split" $? \
    "valid $(lines "$tmp/out/valid.de"), test $(lines "$tmp/out/test.de"), shared $shared"

pair "Das Wetter ist heute schön." "The weather is nice today."
check "known pair present" $? "not found"

pair "Der schnelle braune Fuchs springt über den faulen Hund, während der Bauer aus der Ferne zusieht." \
    "The quick brown fox jumps over the lazy dog while the farmer watches from afar."
check "wrapped headword and translation lines joined" $? "not found"

pair "Er hat den Laufpass bekommen." "He got the elbow." &&
    pair "Die ersten Gäste brachen um halb elf nach Hause auf." "Guests started for home at 10.30." &&
    pair "Bring es morgen zum Wertstoffhof." "Take it to the recycling centre tomorrow."
check "{...} [...] <...> (...) and /.../ markup removed from pairs" $? "a cleaned pair is missing"

left=$(cat "$tmp/out"/*.de "$tmp/out"/*.en | grep -c '[][{}<>()/]')
[ "$left" = 0 ]
check "no markup characters left anywhere" $? "$left lines with markup"

pair "Es war nicht böse gemeint." "No harm intended." &&
    pair "Danke für Ihr Kommen." "Thank you for attending." &&
    pair "Sie ist nur 1 Meter 50 groß." "She is barely five feet tall."
check "first of several alternatives kept" $? "an alternative pair is missing"

found=$(cat "$tmp/out"/*.de "$tmp/out"/*.en | grep -c -e '^Haus' -e 'etw\.' -e 'jdm\.' -e 'liefern' -e 'Zum Wohl' -e '…' -e 'sth\.')
[ "$found" = 0 ]
check "words, phrases with placeholders, slash alternatives, short and fragment entries left out" $? \
    "$found such lines"

twice=$(cat "$tmp/out"/*.de | grep -c -Fx "Das Wetter ist heute schön.")
[ "$twice" = 1 ] && ! grep -q "lovely day" "$tmp/out"/*.en
check "a repeated German sentence is kept once, with its first translation" $? "$twice copies"

cp -r "$tmp/out" "$tmp/first"
"$script" -d "$tmp/deen-tiny.dict.dz" "$tmp/out" >/dev/null 2>&1
same=0
for f in "$tmp/first"/*; do cmp -s "$f" "$tmp/out/${f##*/}" || same=1; done
[ "$(ls -A "$tmp/out" | wc -l)" = 6 ] || same=1
check "a second run leaves identical files and nothing else" $same "outputs differ: $(ls -A "$tmp/out")"

rm "$tmp/deen-tiny.index"
"$script" -d "$tmp/deen-tiny.dict.dz" "$tmp/out2" >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -ne 0 ] && grep -q "deen-tiny.index" "$tmp/err" && [ ! -e "$tmp/out2" ]
check "a missing index is an error that names it" $? "exit $rc: $(cat "$tmp/err")"

[ "$fails" -eq 0 ]
