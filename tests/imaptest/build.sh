#!/usr/bin/env bash
# Builds Dovecot's IMAP compliance suite, imaptest, from the source tarball beside this
# script (commit 924f619, MIT licence: COPYING and COPYING.MIT inside the tarball)
# against the headers of Debian's dovecot-dev and the libraries of dovecot-core.
#
#   tests/imaptest/build.sh DIR     # -> DIR/imaptest/src/imaptest, scripts in DIR/imaptest/src/tests
#
# Needs: dovecot-core dovecot-dev autoconf automake libtool pkg-config make gcc (.ci/run installs
# them). Run it with LD_LIBRARY_PATH=/usr/lib/dovecot; tests/test_imaptest.py does.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh DIR}
mkdir -p "$out"
rm -rf "$out/imaptest"
tar -xzf "$here/imaptest-924f619.tar.gz" -C "$out"
cd "$out/imaptest"
# Its build scripts read the version from git, which a tarball does not carry.
echo "0.0.0-924f619" > version
# Debian 12's libimap added a parameter (parser limits) to imap_parser_create after
# this commit; NULL keeps the defaults.
sed -i 's/imap_parser_create(\(.*\), (size_t)-1);/imap_parser_create(\1, (size_t)-1, NULL);/' \
  src/commands.c src/test-parser.c src/imap-client.c
./autogen.sh >/dev/null 2>&1
./configure -q --with-dovecot=/usr/lib/dovecot >/dev/null
make -s -j"$(nproc)" >/dev/null 2>&1
test -x src/imaptest
