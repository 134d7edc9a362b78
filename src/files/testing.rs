//! What the file sync tests share.

/// Drops, for the calling thread only, what lets root ignore file permissions
/// (`CAP_DAC_OVERRIDE`, `CAP_DAC_READ_SEARCH`), so that a permission test means as root
/// what it means for anyone. `false` when the kernel refuses.
#[cfg(target_os = "linux")]
pub fn without_permission_override() -> bool {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: a version-3 header and two data words, as the kernel expects.
    unsafe {
        if libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) != 0 {
            return false;
        }
        data[0].effective &= !((1 << 1) | (1 << 2));
        libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) == 0
    }
}
