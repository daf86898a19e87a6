# Headless Chromium for tests/test_report.py, which renders the HTML report and
# screenshots it. Included from the top-level Makefile; runs alone too:
#   make -f mk/report.mk chromium

SUDO ?= $(shell [ "$$(id -u)" = 0 ] || echo sudo)
CHROMIUM := /usr/bin/chromium

.PHONY: chromium

chromium: $(CHROMIUM)

# Debian's package: no browser download of its own, works offline from the mirror.
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq chromium
