//! Stage 0 of the plugin file. The main module travels deflated; inflating it in the
//! sandbox's JavaScript took 300 ms (the host puts a clock check into every loop), so
//! this small module does it. Raw exports, no wasm-bindgen: the shim calls
//! `alloc(n)`, writes the deflated bytes there, calls `inflate(ptr, n)`, and reads
//! `inflated_len()` bytes at the pointer it returns (0 when the input is damaged).

use std::sync::Mutex;

static OUTPUT: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static INPUT: Mutex<Vec<u8>> = Mutex::new(Vec::new());

#[no_mangle]
pub extern "C" fn alloc(len: usize) -> *mut u8 {
    let mut input = INPUT.lock().unwrap_or_else(|e| e.into_inner());
    *input = vec![0; len];
    input.as_mut_ptr()
}

#[no_mangle]
pub extern "C" fn inflate(_ptr: *const u8, len: usize) -> *const u8 {
    let input = INPUT.lock().unwrap_or_else(|e| e.into_inner());
    let mut output = OUTPUT.lock().unwrap_or_else(|e| e.into_inner());
    *output = input.get(..len).and_then(|data| miniz_oxide::inflate::decompress_to_vec(data).ok()).unwrap_or_default();
    if output.is_empty() {
        std::ptr::null()
    } else {
        output.as_ptr()
    }
}

#[no_mangle]
pub extern "C" fn inflated_len() -> usize {
    OUTPUT.lock().map(|o| o.len()).unwrap_or(0)
}
