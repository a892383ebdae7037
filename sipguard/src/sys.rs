//! The raw `bpf(2)` calls aya 0.14 does not offer: reading a large array value without copies
//! through the stack, and the XDP link's interface index.

use std::{
    ffi::CString,
    os::{
        fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
};

use aya::maps::{MapError, MapFd};

/// `bpf(cmd, attr, sizeof attr)`: the syscall's result (negative on error, errno set).
///
/// # Safety
/// `attr` must be a valid `union bpf_attr` layout for `cmd`, and every pointer in it must
/// point at live memory of the size the command implies.
unsafe fn bpf<A>(cmd: libc::c_long, attr: &mut A) -> libc::c_long {
    // SAFETY: the caller's contract.
    unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut A, std::mem::size_of::<A>()) }
}

/// Reads array entry `index` straight into `out`. `Array::get` returns by value, which for the
/// 130 KiB policy means several copies on the stack in unoptimized builds (enough to overflow a
/// 2 MiB thread).
pub(crate) fn lookup_into<V: aya::Pod>(
    map: &MapFd,
    index: u32,
    out: &mut V,
) -> Result<(), MapError> {
    // SAFETY: `V` is the map's value type: plain old data of the map's value size.
    let bytes = unsafe {
        std::slice::from_raw_parts_mut((out as *mut V).cast::<u8>(), std::mem::size_of::<V>())
    };
    lookup_bytes(map, index, bytes)
}

/// Reads array entry `index` as bytes; `out` must be as long as the map's values.
pub(crate) fn lookup_bytes(map: &MapFd, index: u32, out: &mut [u8]) -> Result<(), MapError> {
    match elem(
        map.as_fd(),
        ElemCommand::Lookup,
        &index.to_ne_bytes(),
        out.as_mut_ptr(),
        0,
    ) {
        Ok(()) => Ok(()),
        Err(io_error) => Err(MapError::SyscallError(aya::sys::SyscallError {
            call: "bpf_map_lookup_elem",
            io_error,
        })),
    }
}

/// The `BPF_MAP_*_ELEM` commands on raw bytes ([`elem`]).
#[derive(Clone, Copy)]
pub(crate) enum ElemCommand {
    Lookup = 1,
    Update = 2,
    Delete = 3,
    NextKey = 4,
}

/// One `BPF_MAP_*_ELEM` call on a map of any type, with keys and values as bytes: the journal
/// reads and restores entries of every map through it. `value` is the value (lookup: out,
/// update: in) or, for `NextKey`, the next key (out); `key` may be empty for the first key.
///
/// The caller sizes `key` and the buffer behind `value` from the map's key and value sizes.
pub(crate) fn elem(
    map: std::os::fd::BorrowedFd<'_>,
    command: ElemCommand,
    key: &[u8],
    value: *mut u8,
    flags: u64,
) -> Result<(), std::io::Error> {
    // The BPF_MAP_*_ELEM layout of `union bpf_attr`.
    #[repr(C)]
    struct ElemAttr {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    let mut attr = ElemAttr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: if key.is_empty() {
            0
        } else {
            key.as_ptr() as u64
        },
        value: value as u64,
        flags,
    };
    // SAFETY: key and value point at live memory of the map's key and value sizes (the
    // callers' contract); the kernel writes at most value-size (or key-size) bytes.
    let result = unsafe { bpf(command as libc::c_long, &mut attr) };
    if result < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `struct bpf_link_info` up to the XDP member of its union (aya does not expose the ifindex).
#[repr(C)]
#[derive(Default)]
pub(crate) struct RawLinkInfo {
    link_type: u32,
    pub(crate) id: u32,
    pub(crate) prog_id: u32,
    _pad: u32,
    pub(crate) ifindex: u32,
    _rest: [u32; 31],
}

const BPF_LINK_TYPE_XDP: u32 = 6;
const BPF_LINK_TYPE_TCX: u32 = 11;

/// Kernel information about the link pinned at `pin`, if it is an XDP link.
pub(crate) fn pinned_link_info(pin: &Path) -> Option<RawLinkInfo> {
    pinned_link_info_of(pin, BPF_LINK_TYPE_XDP)
}

/// Kernel information about the link pinned at `pin`, if it is a tcx link (its `ifindex` is
/// at the same place: the first member of the union).
pub(crate) fn pinned_tcx_link_info(pin: &Path) -> Option<RawLinkInfo> {
    pinned_link_info_of(pin, BPF_LINK_TYPE_TCX)
}

fn pinned_link_info_of(pin: &Path, link_type: u32) -> Option<RawLinkInfo> {
    const BPF_OBJ_GET: libc::c_long = 7;
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    #[repr(C)]
    struct ObjAttr {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
    }
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let path = CString::new(pin.as_os_str().as_bytes()).ok()?;
    let mut obj = ObjAttr {
        pathname: path.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
    };
    // SAFETY: obj is a valid BPF_OBJ_GET attribute with a NUL-terminated path.
    let fd = unsafe { bpf(BPF_OBJ_GET, &mut obj) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just gave us this fd; OwnedFd closes it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut info = RawLinkInfo::default();
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: size_of::<RawLinkInfo>() as u32,
        info: &mut info as *mut RawLinkInfo as u64,
    };
    // SAFETY: attr is a valid attribute and info a buffer of info_len bytes.
    let rc = unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) };
    (rc == 0 && info.link_type == link_type).then_some(info)
}

/// Whether the kernel still holds the BPF link with this id. A link whose last reference is
/// gone may still be attached for a moment: the kernel releases it from a work queue.
pub(crate) fn link_exists(id: u32) -> bool {
    object_exists(BPF_LINK_GET_FD_BY_ID, id)
}

/// Whether the kernel still holds the BPF program with this id. A program held only by its
/// link is freed after the link's release has detached it: once it is gone, so is the hook.
pub(crate) fn prog_exists(id: u32) -> bool {
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    object_exists(BPF_PROG_GET_FD_BY_ID, id)
}

const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;

/// `BPF_*_GET_FD_BY_ID` on `id`: does the object exist (the fd is closed at once)?
fn object_exists(command: libc::c_long, id: u32) -> bool {
    #[repr(C)]
    struct IdAttr {
        id: u32,
        next_id: u32,
        open_flags: u32,
    }
    let mut attr = IdAttr {
        id,
        next_id: 0,
        open_flags: 0,
    };
    // SAFETY: attr is a valid BPF_{LINK,PROG}_GET_FD_BY_ID attribute (the id comes first).
    let fd = unsafe { bpf(command, &mut attr) };
    if fd < 0 {
        return false;
    }
    // SAFETY: the kernel just gave us this fd.
    drop(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    true
}
