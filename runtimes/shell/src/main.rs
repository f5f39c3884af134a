//! `sh.wasm`: multicall WASI command module (see ABI.md).

fn main() {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    #[cfg(target_family = "wasm")]
    {
        let st = wasmbox_sh::main_entry(args);
        wasmbox_sh::spawn::exit_process(st);
    }
    #[cfg(not(target_family = "wasm"))]
    {
        // natively, run on a big stack like the wasm build (which links with an 8 MiB stack)
        let h = std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(move || wasmbox_sh::main_entry(args))
            .unwrap();
        let st = h.join().unwrap_or(101);
        wasmbox_sh::spawn::exit_process(st);
    }
}
