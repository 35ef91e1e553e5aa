#!/bin/sh
# Incremental build, like cargo or go build: an object is recompiled only when its source (or
# the header) is newer. OUT is the object directory: a cache mount in the Dockerfile, so the
# objects survive between builds without ever being part of an image layer.
set -eu
out=${1:?usage: build.sh OUT BIN}
bin=${2:?usage: build.sh OUT BIN}
mkdir -p "$out"
objs=
for src in src/*.c; do
    obj=$out/$(basename "$src" .c).o
    if [ "$obj" -nt "$src" ] && [ "$obj" -nt src/greet.h ]; then
        echo "fresh     $obj"
    else
        echo "compiling $src"
        gcc -O2 -Wall -c -o "$obj" "$src"
    fi
    objs="$objs $obj"
done
gcc -static -o "$bin" $objs
