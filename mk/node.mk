# The test cluster's real node and the images it runs. Included from the
# top-level Makefile; runs alone too:
#   make -f mk/node.mk node-packages
# Debian's packages: containerd + runc run the pods, the CNI plugins wire them
# to a bridge, iptables carries kube-proxy's Service rules and our FORWARD
# drop, buildah/podman/mmdebstrap build the images from Debian and PyPI, gcc
# builds the static pause image. No registry: images are imported into the
# node's containerd, and every registry name resolves to loopback, where a
# pull fails at once (tests/cluster/node.py).

SUDO ?= $(shell [ "$$(id -u)" = 0 ] || echo sudo)
NODE_PACKAGES := containerd runc containernetworking-plugins iptables buildah podman \
	mmdebstrap gcc libc6-dev

.PHONY: node-packages

# Installed when any is missing (apt-get is not run on every `make test`).
node-packages:
	@[ "$$(dpkg-query -W -f='$${db:Status-Status}\n' $(NODE_PACKAGES) 2>/dev/null | grep -cx installed)" \
		= "$(words $(NODE_PACKAGES))" ] \
	|| { $(SUDO) apt-get update -qq \
		&& $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(NODE_PACKAGES); }
