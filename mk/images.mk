# The controller and trial images, built from controller/Dockerfile and
# trial_image/Dockerfile by mk/build-images.sh (the release build). Included
# from the top-level Makefile; runs alone too:
#   make -f mk/images.mk images | images-cpu | release IMAGE_PREFIX=REGISTRY/kubetune
# Tags are content hashes; podman's layer cache makes a source change rebuild
# in seconds.

IMAGE_PREFIX ?= ghcr.io/kubetune
export IMAGE_PREFIX
SUDO ?= $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian's packages: buildah/podman build the images without a daemon, from
# Debian and PyPI; mmdebstrap makes the Debian base from Debian's packages.
IMAGE_PACKAGES := buildah podman mmdebstrap
IMAGES_PREREQS := image-tools

.PHONY: images images-cpu release image-tools

# Installed when any is missing (apt-get is not run on every `make test`).
image-tools:
	@[ "$$(dpkg-query -W -f='$${db:Status-Status}\n' $(IMAGE_PACKAGES) 2>/dev/null | grep -cx installed)" \
		= "$(words $(IMAGE_PACKAGES))" ] \
	|| { $(SUDO) apt-get update -qq \
		&& $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(IMAGE_PACKAGES); }

# The trial image with TensorFlow for NVIDIA GPUs (the default).
images: $(IMAGES_PREREQS)
	bash mk/build-images.sh

# The trial image with tensorflow-cpu; the Debian base from Debian's packages
# (mmdebstrap), for machines that cannot reach Docker Hub: what the tests run.
images-cpu: $(IMAGES_PREREQS)
	BASE_IMAGE_FROM=mmdebstrap bash mk/build-images.sh --cpu

# Build, push both images and the chart (OCI) under IMAGE_PREFIX.
release: $(IMAGES_PREREQS)
	bash mk/build-images.sh --push
