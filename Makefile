# sandlot: a C core (libuv, Lua 5.4) and a Lua library. See README.md.
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
LMODDIR    ?= $(PREFIX)/share/lua/5.4
CMODDIR    ?= $(PREFIX)/lib/lua/5.4
DATADIR    ?= $(PREFIX)/share/sandlot
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
MANDIR     ?= $(PREFIX)/share/man
DOCDIR     ?= $(PREFIX)/share/doc/sandlot
COMPLETIONDIR ?= $(PREFIX)/share/bash-completion/completions
CFLAGS     ?= -O2 -g

PKGS      = lua5.4 libuv libedit libcurl libssh2
WARN      = -Wall -Wextra -Wshadow -Wundef -Wwrite-strings -Wstrict-prototypes \
            -Wmissing-prototypes -Wold-style-definition -Wformat=2 -Wvla
WARN     += $(if $(filter 1,$(WERROR)),-Werror)
SAN       = $(if $(SANITIZE),-fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all)
# a sanitizer build lives beside the normal one so neither invalidates the other
B        ?= $(if $(SANITIZE),build-san,build)
SL_CFLAGS = -std=c11 -D_DEFAULT_SOURCE -D_GNU_SOURCE -fPIC -fvisibility=hidden $(WARN) $(SAN) \
            -DSANDLOT_LUADIR='"$(LMODDIR)"' -DSANDLOT_MODDIR='"$(LIBDIR)/sandlot"' \
            $(shell pkg-config --cflags $(PKGS))
LIBS      = $(shell pkg-config --libs lua5.4 libuv libedit zlib sqlite3 msgpack) -lutil
MODLIBS   = $(shell pkg-config --libs libuv libcurl libssh2 openssl zlib sqlite3 msgpack) \
            -lhttp_parser -lutil

# The libraries link every module in; the host binary leaves HTTP and SSH (libcurl, libssh2 and
# their ~30 dependencies) out and loads them from lib/sandlot/*.so on first use (core/lazy.c).
CORE      = loop engine sched errors timer proc proc_spawn pty outbuf sys fs zlib sqlite sqlite_worker \
            codec event channel plugin plugin_state fswatch ws bytecode
NET       = http ssh
SSH       = ssh ssh_session ssh_auth ssh_exec ssh_exec_handle ssh_sftp
HTTP_OBJ  = $(B)/http.o $(B)/http_multi.o $(B)/http_fetch.o $(B)/http_response.o $(B)/http_upgrade.o $(B)/http_head.o \
            $(B)/http_serve.o $(B)/http_request.o $(B)/http_stream.o $(B)/tls.o
CORE_OBJ  = $(CORE:%=$(B)/%.o) $(B)/bytecode_data.o
SSH_OBJ   = $(SSH:%=$(B)/%.o)
LIB_OBJ   = $(CORE_OBJ) $(HTTP_OBJ) $(SSH_OBJ) $(B)/net.o
HOST_OBJ  = $(B)/main.o $(B)/repl.o $(B)/lazy.o
MODS      = $(NET:%=$(B)/lib/sandlot/%.so)

# Debian 12 packages: build, test and runtime. `make deps` installs the missing ones.
DEB_PKGS  = build-essential pkg-config lua5.4 liblua5.4-dev libuv1-dev libedit-dev \
            libcurl4-openssl-dev libssl-dev openssl libssh2-1-dev libhttp-parser-dev libsqlite3-dev libmsgpack-dev zlib1g-dev \
            lua-cjson lua-yaml lua-busted bubblewrap docker.io openssh-server busybox-static clang \
            libclang-rt-14-dev luarocks lua-check cppcheck curl
BUSTED    = /usr/bin/busted
# make check-fakes: Node and npm, installed from Debian only when no npm is on PATH (a
# NodeSource or nvm install is kept as it is); run.lua fetches a newer Node when Debian's is too old
NODE_PKGS = nodejs npm

.PHONY: all deps check-deps test asan check-fakes fuzz fuzz-list bench demo install uninstall clean \
        rock rock-install lint docs

all: $(B)/sandlot $(MODS) $(B)/libsandlot.a $(B)/libsandlot.so $(B)/sandlot.so $(B)/sandlot.pc \
     $(B)/sandlot.1 $(B)/sandlot-peer

$(B)/%.o: core/%.c
	@mkdir -p $(@D)
	$(CC) $(SL_CFLAGS) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<
-include $(wildcard $(B)/*.d)

# the Lua library and the providers compiled to bytecode by the stock lua5.4 (core/bytecode.c
# serves a module from it when the file found is the text it was compiled from)
LUA_LIB   = $(sort $(shell find lua/sandlot -name '*.lua') $(wildcard providers/*.lua))
$(B)/bytecode_data.c: core/bytecode_gen.lua $(LUA_LIB)
	@mkdir -p $(@D)
	lua5.4 core/bytecode_gen.lua $@ $(CURDIR)/core/bytecode.h $(LUA_LIB)
$(B)/bytecode_data.o: $(B)/bytecode_data.c core/bytecode.h
	$(CC) $(SL_CFLAGS) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

# --export-dynamic: the modules resolve the core's SL_SHARED functions against the binary
$(B)/sandlot: $(HOST_OBJ) $(CORE_OBJ)
	$(CC) $(SAN) $(LDFLAGS) -Wl,--export-dynamic -o $@ $^ $(LIBS)

# sandlot-peer: the replica sandlot.replicate ships into a sandbox. Static (Debian's
# liblua5.4.a, libuv_a.a, libmsgpackc.a) so it runs in a root without libc; no HTTP, SSH,
# SQLite or zlib. Its objects get their own directory: -ffunction-sections lets
# --gc-sections drop what it never calls. core/peer_main.c keeps dlopen and getpwuid_r
# (NSS) out of the link; spec/replicate_spec.lua checks the result.
PEER      = peer_main loop sched errors timer proc proc_spawn pty outbuf sys fs codec event channel
PEER_OBJ  = $(PEER:%=$(B)/peer/%.o)
STATIC_LIBDIR ?= $(shell pkg-config --variable=libdir libuv)
PEER_LIBS = $(STATIC_LIBDIR)/liblua5.4.a $(STATIC_LIBDIR)/libuv_a.a \
            $(STATIC_LIBDIR)/libmsgpackc.a -lutil -lm -lpthread

# a sanitizer runtime cannot link statically: a sanitized build still ships a plain peer
$(B)/peer/%.o: core/%.c
	@mkdir -p $(@D)
	$(CC) $(filter-out $(SAN),$(SL_CFLAGS)) -ffunction-sections -fdata-sections \
	  $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<
-include $(wildcard $(B)/peer/*.d)

$(B)/sandlot-peer: $(PEER_OBJ)
	$(CC) -static -s $(LDFLAGS) -Wl,--gc-sections -o $@ $^ $(PEER_LIBS)

$(B)/lib/sandlot/http.so: $(HTTP_OBJ) $(B)/module.o
	@mkdir -p $(@D)
	$(CC) -shared $(SAN) $(LDFLAGS) -o $@ $^ $(shell pkg-config --libs libcurl openssl libuv) \
	  -lhttp_parser

$(B)/lib/sandlot/ssh.so: $(SSH_OBJ) $(B)/module.o
	@mkdir -p $(@D)
	$(CC) -shared $(SAN) $(LDFLAGS) -o $@ $^ $(shell pkg-config --libs libssh2 libuv)

$(B)/libsandlot.a: $(LIB_OBJ)
	rm -f $@
	$(AR) rcs $@ $^

$(B)/libsandlot.so: $(LIB_OBJ) core/exports.map
	$(CC) -shared $(SAN) $(LDFLAGS) -Wl,-soname,libsandlot.so.0 \
	  -Wl,--version-script=core/exports.map -o $@ $(LIB_OBJ) \
	  $(shell pkg-config --libs lua5.4 libuv libcurl libssh2 openssl zlib sqlite3 msgpack) \
	  -lhttp_parser -lutil

# the Lua C module for a stock lua5.4: no -llua, the interpreter provides Lua
$(B)/sandlot.so: $(LIB_OBJ) core/exports.map
	$(CC) -shared $(SAN) $(LDFLAGS) -Wl,--version-script=core/exports.map -o $@ $(LIB_OBJ) $(MODLIBS)

# sandlot.pc: libdir and includedir are written relative to ${prefix} when they lie under it,
# so `pkg-config --define-variable=prefix=...` relocates the whole tree (a DESTDIR, a bundle).
# install writes it afresh: a PREFIX given only to `make install` must still reach the file.
VERSION  := $(shell sed -n 's/^\#define SANDLOT_VERSION "\(.*\)"/\1/p' core/sandlot.h)
PC_SED    = sed -e 's|@PREFIX@|$(PREFIX)|' \
              -e 's|@LIBDIR@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))|' \
              -e 's|@INCLUDEDIR@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))|' \
              -e 's|@VERSION@|$(VERSION)|'

# the man page is written by the binary from its own command table (docs/man.lua)
$(B)/sandlot.1: $(B)/sandlot docs/man.lua lua/sandlot/cli.lua $(wildcard lua/sandlot/cli/*.lua)
	SANDLOT_CONFIG= $(B)/sandlot docs/man.lua > $@.tmp && mv $@.tmp $@

$(B)/sandlot.pc: sandlot.pc.in core/sandlot.h
	@mkdir -p $(@D)
	$(PC_SED) sandlot.pc.in > $@

check-deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; command -v npm >/dev/null 2>&1 || missing="$$missing $(NODE_PKGS)"; \
	if [ -n "$$missing" ]; then echo "missing:$$missing"; exit 1; fi

deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	command -v npm >/dev/null 2>&1 || missing="$$missing $(NODE_PKGS)"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

test: deps
	$(MAKE) all
	$(MAKE) -C examples/embed B=$(abspath $(B)) SANITIZE=$(SANITIZE)
	rm -rf $(abspath $(B))/test-state       # the suite's own ledger, never the user's
	XDG_STATE_HOME=$(abspath $(B))/test-state SANDLOT_BIN=$(abspath $(B))/sandlot \
	  $(B)/sandlot spec/run.lua $(SPEC_ARGS)

asan:
	$(MAKE) test SANITIZE=address,undefined

# every spec/fakes/check/*.mjs against its fake, with the npm packages its header names
# (installed into a temporary directory); skipped with a notice without node and npm.
# See spec/fakes/check/run.lua. CHECK_FAKES="a.mjs b.mjs" runs only those.
check-fakes: all
	$(B)/sandlot spec/fakes/check/run.lua $(CHECK_FAKES)

# libFuzzer targets, NAME:MODULE:FUNCTION each: fuzz/lua_target.c calls MODULE.FUNCTION(input)
# for every input, starting from the seeds in fuzz/corpus/NAME/. A decoder is one more word
# here (and a seed directory), e.g. wire_json:sandlot.wire.json:decode.
FUZZ_TARGETS = config:fuzz.targets:config json:sandlot.wire.json:decode \
               base64:sandlot.wire.base64:decode gzip:sandlot.wire.gzip:decompress \
               tar:sandlot.wire.tar:list connect:fuzz.targets:connect \
               ndjson:fuzz.targets:ndjson stdcopy:fuzz.targets:stdcopy \
               multipart:fuzz.targets:multipart http_head:fuzz.targets:http_head \
               codec:fuzz.targets:codec http_request:fuzz.targets:http_request \
               peer_frames:fuzz.targets:peer_frames \
               ws:fuzz.targets:ws
FUZZ_SECONDS ?= 30
FUZZ_CC  ?= clang
FB        = build-fuzz
FUZZ_SAN  = -fsanitize=fuzzer,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

fuzz-list:
	@echo $(foreach t,$(FUZZ_TARGETS),$(firstword $(subst :, ,$(t))))

# every target runs FUZZ_SECONDS; a failure leaves its input in build-fuzz/NAME-crash-*
fuzz: deps
	$(MAKE) B=$(FB) CC=$(FUZZ_CC) SANITIZE=fuzzer-no-link,address,undefined $(FB)/libsandlot.a
	@pass=0; fail=0; for t in $(FUZZ_TARGETS); do \
	  name=$${t%%:*}; rest=$${t#*:}; mod=$${rest%%:*}; fn=$${rest#*:}; \
	  $(FUZZ_CC) -std=c11 -D_DEFAULT_SOURCE -g -O1 $(WARN) $(FUZZ_SAN) \
	    -DFUZZ_MODULE="\"$$mod\"" -DFUZZ_FUNCTION="\"$$fn\"" -DFUZZ_ROOT="\"$(CURDIR)\"" \
	    $(shell pkg-config --cflags lua5.4) -o $(FB)/fuzz-$$name fuzz/lua_target.c \
	    $(FB)/libsandlot.a $(shell pkg-config --libs lua5.4 libuv libcurl libssh2 openssl zlib sqlite3 msgpack) \
	    -lhttp_parser || exit 1; \
	  mkdir -p $(FB)/corpus/$$name; \
	  echo "fuzz: $$name ($$mod.$$fn) for $(FUZZ_SECONDS)s"; \
	  if $(FB)/fuzz-$$name -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -timeout=10 \
	      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=$(FB)/$$name- \
	      $(FB)/corpus/$$name fuzz/corpus/$$name > $(FB)/$$name.log 2>&1; \
	  then pass=$$((pass + 1)); tail -n 3 $(FB)/$$name.log | sed 's/^/  /'; \
	  else fail=$$((fail + 1)); tail -n 40 $(FB)/$$name.log; fi; \
	done; \
	echo "fuzz: $$pass passed, $$fail failed"; \
	if [ -n "$$SANDLOT_TEST_SUMMARY" ]; then echo "$$pass $$fail 0" >> "$$SANDLOT_TEST_SUMMARY"; fi; \
	[ $$fail -eq 0 ]

bench: deps all
	$(B)/sandlot bench/run.lua

demo: deps
	$(MAKE) all
	$(B)/sandlot examples/hello.lua

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) \
	  $(DESTDIR)$(LMODDIR)/sandlot $(DESTDIR)$(CMODDIR) $(DESTDIR)$(PKGCONFIGDIR) \
	  $(DESTDIR)$(DATADIR)
	install -m 755 $(B)/sandlot $(DESTDIR)$(BINDIR)/sandlot
	install -d $(DESTDIR)$(LIBDIR)/sandlot
	for m in $(NET); do install -m 755 $(B)/lib/sandlot/$$m.so $(DESTDIR)$(LIBDIR)/sandlot/; done
	install -m 755 $(B)/sandlot-peer $(DESTDIR)$(LIBDIR)/sandlot/sandlot-peer   # sandlot.replicate
	install -m 644 $(B)/libsandlot.a $(DESTDIR)$(LIBDIR)/libsandlot.a
	install -m 755 $(B)/libsandlot.so $(DESTDIR)$(LIBDIR)/libsandlot.so.$(VERSION)
	ln -sf libsandlot.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libsandlot.so.0
	ln -sf libsandlot.so.0 $(DESTDIR)$(LIBDIR)/libsandlot.so
	install -m 755 $(B)/sandlot.so $(DESTDIR)$(CMODDIR)/sandlot.so
	install -m 644 core/sandlot.h $(DESTDIR)$(INCLUDEDIR)/sandlot.h
	$(PC_SED) sandlot.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/sandlot.pc
	chmod 644 $(DESTDIR)$(PKGCONFIGDIR)/sandlot.pc
	rm -rf $(DESTDIR)$(LMODDIR)/sandlot          # no stale module may shadow a removed one
	for f in $$(cd lua && find sandlot -type f ! -name '.*'); do \
	  install -D -m 644 lua/$$f $(DESTDIR)$(LMODDIR)/$$f || exit 1; done
	install -D -m 644 $(B)/sandlot.1 $(DESTDIR)$(MANDIR)/man1/sandlot.1
	install -D -m 644 docs/sandlot.bash $(DESTDIR)$(COMPLETIONDIR)/sandlot
	for f in README.md LICENSE providers/README.md docs/api.md; do \
	  install -D -m 644 $$f $(DESTDIR)$(DOCDIR)/$$f || exit 1; done
	install -d $(DESTDIR)$(DATADIR)/providers $(DESTDIR)$(DATADIR)/plugins
	for f in $$(find providers plugins spec/conformance spec/support/summary.lua \
	    -type f ! -name '.*'); do \
	  install -D -m 644 $$f $(DESTDIR)$(DATADIR)/$$f || exit 1; done   # check-provider needs the suite

# the API reference, from the doc comments (spec/docs_spec.lua fails when it is stale)
docs: $(B)/sandlot
	$(B)/sandlot docs/api.lua > docs/api.md.tmp && mv docs/api.md.tmp docs/api.md
	$(B)/sandlot docs/types.lua > types/sandlot_core.lua.tmp && \
	  mv types/sandlot_core.lua.tmp types/sandlot_core.lua

# luacheck (lua-check) on the Lua tree, configured by .luacheckrc; cppcheck on core/
lint:
	luacheck -q .
	cppcheck --quiet --error-exitcode=1 --std=c11 --enable=warning,portability --inline-suppr \
	  --suppress=missingIncludeSystem --library=posix --library=lua --library=libcurl \
	  --library=sqlite3 --library=zlib core/

# LuaRocks (sandlot-*.rockspec, build type make): `rock` builds the one Lua C module,
# `rock-install` puts it in the rock's INST_LIBDIR and the Lua tree in INST_LUADIR, with the
# providers, plugins and conformance suite under INST_LUADIR/sandlot/share (sandlot._paths).
rock: $(B)/sandlot.so

rock-install: rock
	@test -n "$(INST_LIBDIR)" && test -n "$(INST_LUADIR)" || \
	  { echo "rock-install: INST_LIBDIR and INST_LUADIR are set by luarocks"; exit 2; }
	install -d $(INST_LIBDIR) $(INST_LUADIR)
	install -m 755 $(B)/sandlot.so $(INST_LIBDIR)/sandlot.so
	rm -rf $(INST_LUADIR)/sandlot
	for f in $$(cd lua && find sandlot -type f ! -name '.*'); do \
	  install -D -m 644 lua/$$f $(INST_LUADIR)/$$f || exit 1; done
	for f in $$(find providers plugins spec/conformance spec/support/summary.lua \
	    -type f ! -name '.*'); do \
	  install -D -m 644 $$f $(INST_LUADIR)/sandlot/share/$$f || exit 1; done

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/sandlot $(DESTDIR)$(LIBDIR)/libsandlot.a \
	  $(DESTDIR)$(LIBDIR)/libsandlot.so $(DESTDIR)$(LIBDIR)/libsandlot.so.0 \
	  $(DESTDIR)$(LIBDIR)/libsandlot.so.$(VERSION) \
	  $(DESTDIR)$(CMODDIR)/sandlot.so $(DESTDIR)$(INCLUDEDIR)/sandlot.h \
	  $(DESTDIR)$(PKGCONFIGDIR)/sandlot.pc $(DESTDIR)$(MANDIR)/man1/sandlot.1 \
	  $(DESTDIR)$(COMPLETIONDIR)/sandlot
	rm -rf $(DESTDIR)$(LMODDIR)/sandlot $(DESTDIR)$(DATADIR) $(DESTDIR)$(LIBDIR)/sandlot \
	  $(DESTDIR)$(DOCDIR)

clean:
	rm -rf build build-san build-fuzz
	$(MAKE) -C examples/embed clean
