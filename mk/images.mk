# The controller and trial images, built from controller/Dockerfile and
# trial_image/Dockerfile by mk/build-images.sh (the release build). Included
# from the top-level Makefile; runs alone too:
#   make -f mk/images.mk images | images-cpu | release IMAGE_PREFIX=REGISTRY/kubetune
# Tags are content hashes; podman's layer cache makes a source change rebuild
# in seconds.

IMAGE_PREFIX ?= ghcr.io/kubetune
export IMAGE_PREFIX
# From the top-level Makefile: podman and mmdebstrap first (mk/node.mk).
IMAGES_PREREQS := $(if $(BIN),node-packages)

.PHONY: images images-cpu release

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
