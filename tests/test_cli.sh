#!/bin/sh
# The etnas command line as a user meets it: help, version, arch sampling
# that repeats, and for every bad input a single-line error naming the file
# (and line) and the cause, with exit status 2. Prints TAP.
set -u
: "${ET_BUILDDIR:=.}" "${ET_SRCDIR:=.}"
etnas="$ET_BUILDDIR/etnas"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
. "$ET_SRCDIR/tests/tap.sh"

# expect STATUS PATTERN DESCRIPTION -- ARGS: status, one stderr line matching PATTERN
expect() {
    want=$1 pat=$2 what=$3
    shift 4
    "$etnas" "$@" >"$tmp/out" 2>"$tmp/err"
    got=$?
    lines=$(wc -l <"$tmp/err")
    if [ "$got" -eq "$want" ] && [ "$lines" -le 1 ] && grep -q -- "$pat" "$tmp/err"; then
        ok "$what"
    else
        not_ok "$what" "exit $got (want $want), stderr: $(cat "$tmp/err")"
    fi
}


"$etnas" --help | grep -q "^usage: etnas COMMAND" && ok "--help" || not_ok "--help"
"$etnas" --version | grep -q "^etnas [0-9]" && ok "--version" || not_ok "--version"
for c in run check plugins arch report bleu; do
    "$etnas" $c --help | grep -q "^usage: etnas $c" && ok "$c --help" || not_ok "$c --help"
done

space="$ET_SRCDIR/etc/fashion-space.ini"
"$etnas" arch "$space" --sample 5 --seed 1 >"$tmp/a1" && "$etnas" arch "$space" --sample 5 --seed 1 >"$tmp/a2"
if [ "$(wc -l <"$tmp/a1")" -eq 5 ] && cmp -s "$tmp/a1" "$tmp/a2"; then ok "arch --sample repeats"; else not_ok "arch --sample repeats"; fi
same=1
while IFS= read -r a; do
    [ "$("$etnas" arch "$space" --parse "$a")" = "$a" ] || same=0
done <"$tmp/a1"
[ $same -eq 1 ] && ok "arch --parse prints each sample back unchanged" || not_ok "arch --parse round trip"
"$etnas" arch "$space" | grep -q "encoder space, 45216 architectures" && ok "arch space size" || not_ok "arch space size" "$("$etnas" arch "$space")"

expect 2 "unknown command 'frobnicate'" "unknown command" -- frobnicate
expect 2 "unknown option '--sampel'" "unknown option" -- arch "$space" --sampel 3
expect 2 "nope.ini: cannot open: No such file or directory" "missing file" -- check "$tmp/nope.ini"
printf "[task]\nplugin = x\n" >"$tmp/nospace.ini"
expect 2 "nospace.ini: no \[space\] section" "space file without [space]" -- arch "$tmp/nospace.ini"

printf '[space]\nencoder_embed_dim = 64\nencoder_layers = 2\nencoder_ffn_dim = 64\nencoder_heads = two\n' >"$tmp/s.ini"
expect 2 "s.ini:5: \[space\] encoder_heads: 'two' is not a positive integer" "bad space value names file:line" -- arch "$tmp/s.ini"
printf '[space]\nencoder_embed_dim = 64\nencoder_layers = 2\nencoder_ffn_dim = 64\nencoder_heads = 2\n' >"$tmp/s.ini"
expect 2 "arch text, offset 3: expected '(E='" "bad arch text names the offset" -- arch "$tmp/s.ini" --parse "enc[E=64"
expect 2 "encoder embed_dim 65 is not one of the space's choices (64)" "arch outside the space" -- arch "$tmp/s.ini" --parse "enc(E=65,L=2)[ffn=64,heads=2,attn=softmax,block=standard,act=gelu][ffn=64,heads=2,attn=softmax,block=standard,act=gelu]"

bleu_out=$("$etnas" bleu "$ET_SRCDIR/tests/data/bleu/tiny.hyp" "$ET_SRCDIR/tests/data/bleu/tiny.ref")
[ "$bleu_out" = "BLEU = 33.00 60.7/41.7/25.0/18.8 (BP = 1.000 ratio = 1.400 hyp_len = 28 ref_len = 20)" ] \
    && ok "bleu prints sacreBLEU's line" || not_ok "bleu" "$bleu_out"
head -n 3 "$ET_SRCDIR/tests/data/bleu/tiny.ref" >"$tmp/short.ref"
expect 2 "tiny.hyp has 4 lines but .*short.ref has 3" "bleu with mismatched files" -- bleu "$ET_SRCDIR/tests/data/bleu/tiny.hyp" "$tmp/short.ref"

# the shipped experiments (every etc/ file with an [experiment]) are valid
# against the shipped plugins
for f in "$ET_SRCDIR"/etc/*.ini; do
    grep -q '^\[experiment\]' "$f" || continue
    e=$(basename "$f")
    "$etnas" check "$f" >"$tmp/check.out" 2>&1 && ok "etc/$e passes etnas check" ||
        not_ok "etc/$e" "$(cat "$tmp/check.out")"
done

# costs of one arch without a search: Transformer-Base in HAT's convention
printf '[space]\nencoder_embed_dim = 512\nencoder_layers = 6\nencoder_ffn_dim = 2048\nencoder_heads = 8\ndecoder_embed_dim = 512\ndecoder_layers = 6\ndecoder_ffn_dim = 2048\ndecoder_heads = 8\nqkv_dim = 512\nnorm = post\n' >"$tmp/base.ini"
costs=$("$etnas" arch "$tmp/base.ini" --sample 1 --cost params,flops --set params.convention=hat --set flops.convention=hat | tail -n 1)
case "$costs" in
*"params_m=44.1385 "*"flops_g=2.67713 "*) ok "arch --cost gives Transformer-Base's HAT params and FLOPs" ;;
*) not_ok "arch --cost" "$costs" ;;
esac
expect 2 "needs the experiment's task" "arch --cost says when a proxy needs the task" -- arch "$tmp/base.ini" --sample 1 --cost params

# experiments, against the test plugins only
mkdir "$tmp/plugins"
for p in fake_search fake_task fake_proxy fake_attn; do ln -s "$ET_BUILDDIR/tests/plugins/.libs/$p.so" "$tmp/plugins/"; done
cat >"$tmp/e.ini" <<INI
[experiment]
seed = 3
plugin_path = $tmp/plugins
[task]
plugin = fake_task
[space]
encoder_embed_dim = 64
encoder_layers = 2
encoder_ffn_dim = 64
encoder_heads = 2
encoder_attention = fake_attn
[search one]
plugin = fake_search
INI
ETNAS_PLUGIN_PATH= "$etnas" check "$tmp/e.ini" >"$tmp/out" 2>&1 && grep -q ": ok$" "$tmp/out" && ok "check of a valid experiment" || not_ok "check" "$(cat "$tmp/out")"
# an operator option whose value holds commas inside parentheses (opgraph)
sed 's/^encoder_attention = .*/encoder_attention = fake_attn, opgraph(graph=matmul(softmax(scale(matmul(Q,transpose(K)))),V),recompute=false)/' \
    "$tmp/e.ini" >"$tmp/og.ini"
"$etnas" check "$tmp/og.ini" >"$tmp/out" 2>&1 && grep -q ": ok$" "$tmp/out" &&
    ok "an opgraph expression with commas passes as one option value" || not_ok "opgraph option" "$(cat "$tmp/out")"
sed 's/recompute=false)/recompute=false,graph=matmul(Q,V))/' "$tmp/og.ini" >"$tmp/og2.ini"
expect 2 "option 'graph' is given twice" "a repeated option is still refused" -- check "$tmp/og2.ini"
{ cat "$tmp/e.ini"; printf '[trian]\nsteps = 3\n'; } >"$tmp/e2.ini"
expect 2 "e2.ini:14: unknown section \[trian\] (did you mean \[train\]?)" "unknown section" -- check "$tmp/e2.ini"
expect 2 "\-\-set: \[search one\] unknown key 'sise' (did you mean 'size'?)" "--set unknown key" -- check "$tmp/e.ini" --set "search one.sise=3"
expect 1 "\[task\] fake_task: fake_task has no data" "a failed run says why in one line, exit 1" -- run "$tmp/e.ini" --out "$tmp/rundir"

ln -s "$ET_BUILDDIR/tests/plugins/.libs/bad_abi.so" "$tmp/plugins/"
expect 2 "bad_abi.so: plugin ABI version 999, but this etnas speaks version" "wrong ABI named with both versions" -- check "$tmp/e.ini"
rm "$tmp/plugins/bad_abi.so"
ln -s "$ET_BUILDDIR/tests/plugins/.libs/dup_search.so" "$tmp/plugins/"
expect 2 "search plugin 'fake_search' is also provided by" "duplicate plugin names both files" -- check "$tmp/e.ini"

echo "1..$n"
[ $fails -eq 0 ]
