# dsv3 quick start: `make run` (build, make the default model, run the quickstart) and `make test` (CPU tests).
BUILD   ?= build
JOBS    ?= $(shell nproc)
DSV3     = $(BUILD)/tools/dsv3
MODEL   ?= models/tiny
CMAKE_FLAGS ?=

.PHONY: all setup configure build test run clean

all: build

setup:
	@bash scripts/setup.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

configure: setup $(BUILD)/build.ninja

build: configure
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest -L cpu --output-on-failure -j $(JOBS)

$(MODEL)/config.json: | build
	$(DSV3) make-tiny-model --preset tiny --out $(MODEL)

run: build $(MODEL)/config.json
	$(DSV3) generate --model_dir $(MODEL)

clean:
	rm -rf $(BUILD)
