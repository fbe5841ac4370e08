//! Byte offsets of kernel struct fields from the running kernel's BTF
//! (`/sys/kernel/btf/vmlinux`), for the eBPF programs: Rust eBPF has no CO-RE relocations, so
//! user space reads the offsets and passes them as globals at load time. Nothing is hard-coded
//! for one kernel; a field that is not found is reported as unknown and the program skips the
//! read. Format: <https://docs.kernel.org/bpf/btf.html>.

use std::collections::HashMap;

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_INT: u32 = 1;
#[cfg(test)]
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, Clone)]
struct Member {
    name: u32,
    ty: u32,
    bit_offset: u32,
}

#[derive(Debug, Clone)]
struct Type {
    name: u32,
    kind: u32,
    /// size or referenced type id
    size_type: u32,
    members: Vec<Member>,
}

/// The parsed type section (only what field lookups need).
#[derive(Debug)]
pub struct Btf {
    types: Vec<Type>,
    strings: Vec<u8>,
    structs: HashMap<String, u32>,
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

impl Btf {
    /// Parses raw BTF (little-endian, as on the hosts we run on).
    pub fn parse(data: &[u8]) -> Option<Btf> {
        if u16::from_le_bytes(data.get(0..2)?.try_into().ok()?) != BTF_MAGIC {
            return None;
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let type_off = u32_at(data, 8)? as usize;
        let type_len = u32_at(data, 12)? as usize;
        let str_off = u32_at(data, 16)? as usize;
        let str_len = u32_at(data, 20)? as usize;
        let types_b = data.get(hdr_len + type_off..hdr_len + type_off + type_len)?;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)?
            .to_vec();
        // Type id 0 is `void`.
        let mut types = vec![Type {
            name: 0,
            kind: 0,
            size_type: 0,
            members: Vec::new(),
        }];
        let mut p = 0;
        while p + 12 <= types_b.len() {
            let name = u32_at(types_b, p)?;
            let info = u32_at(types_b, p + 4)?;
            let size_type = u32_at(types_b, p + 8)?;
            p += 12;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kflag = info >> 31 == 1;
            let mut members = Vec::new();
            let extra = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = p + 12 * i;
                        let off = u32_at(types_b, m + 8)?;
                        members.push(Member {
                            name: u32_at(types_b, m)?,
                            ty: u32_at(types_b, m + 4)?,
                            // With kflag the top 8 bits are the bitfield size.
                            bit_offset: if kflag { off & 0x00ff_ffff } else { off },
                        });
                    }
                    12 * vlen
                }
                KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
                KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
                _ => 0,
            };
            p += extra;
            types.push(Type {
                name,
                kind,
                size_type,
                members,
            });
        }
        let mut btf = Btf {
            types,
            strings,
            structs: HashMap::new(),
        };
        for (id, t) in btf.types.iter().enumerate() {
            if t.kind == KIND_STRUCT && t.name != 0 && !t.members.is_empty() {
                let name = btf.str_at(t.name).to_owned();
                btf.structs.entry(name).or_insert(id as u32);
            }
        }
        Some(btf)
    }

    /// The running kernel's BTF.
    pub fn from_sys() -> Option<Btf> {
        Btf::parse(&std::fs::read("/sys/kernel/btf/vmlinux").ok()?)
    }

    fn str_at(&self, off: u32) -> &str {
        let s = self.strings.get(off as usize..).unwrap_or_default();
        let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
        std::str::from_utf8(&s[..end]).unwrap_or("")
    }

    /// Follows typedefs and qualifiers.
    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..32 {
            let t = self.types.get(id as usize)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_type;
                }
                _ => return Some(t),
            }
        }
        None
    }

    fn find_in(&self, t: &Type, field: &str, depth: u32) -> Option<u32> {
        if depth > 8 {
            return None;
        }
        for m in &t.members {
            if m.name != 0 && self.str_at(m.name) == field {
                return (m.bit_offset % 8 == 0).then_some(m.bit_offset / 8);
            }
            // Anonymous struct or union: its fields belong to the outer struct.
            if m.name == 0
                && let Some(inner) = self.resolve(m.ty)
                && matches!(inner.kind, KIND_STRUCT | KIND_UNION)
                && let Some(off) = self.find_in(inner, field, depth + 1)
            {
                return Some(m.bit_offset / 8 + off);
            }
        }
        None
    }

    /// Byte offset of `strct.field` (searching anonymous members too).
    pub fn offset(&self, strct: &str, field: &str) -> Option<u32> {
        let t = self.types.get(*self.structs.get(strct)? as usize)?;
        self.find_in(t, field, 0)
    }

    /// Whether `kind == ptr` for the field (sanity check for pointer chains).
    #[cfg(test)]
    pub fn is_pointer(&self, strct: &str, field: &str) -> bool {
        let Some(t) = self
            .structs
            .get(strct)
            .and_then(|id| self.types.get(*id as usize))
        else {
            return false;
        };
        t.members.iter().any(|m| {
            self.str_at(m.name) == field && self.resolve(m.ty).is_some_and(|t| t.kind == KIND_PTR)
        })
    }
}

#[cfg(test)]
mod tests {
    //! Tier: unit + kernel (docs/testing.md). Offsets from a hand-made BTF blob (unit) and from
    //! the running kernel's BTF when it has one (kernel).
    use super::*;

    fn blob() -> Vec<u8> {
        // strings: "\0int\0s\0a\0b\0"
        let strings = b"\0int\0s\0a\0b\0".to_vec();
        let mut types = Vec::new();
        let mut push = |v: &[u32]| {
            for x in v {
                types.extend_from_slice(&x.to_le_bytes());
            }
        };
        // 1: int "int" size 4
        push(&[1, KIND_INT << 24, 4, 32]);
        // 2: anonymous union { int b; } (b at 0)
        push(&[0, (KIND_UNION << 24) | 1, 4, 9, 1, 0]);
        // 3: struct s { int a; /* at 32 */ union { int b; } /* at 64 */ }
        push(&[5, (KIND_STRUCT << 24) | 2, 12, 7, 1, 32, 0, 2, 64]);
        let mut out = Vec::new();
        out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        for x in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.extend_from_slice(&types);
        out.extend_from_slice(&strings);
        out
    }

    #[test]
    fn test_offsets_with_anonymous_members() {
        let btf = Btf::parse(&blob()).expect("parses");
        assert_eq!(btf.offset("s", "a"), Some(4));
        assert_eq!(btf.offset("s", "b"), Some(8));
        assert_eq!(btf.offset("s", "zz"), None);
        assert_eq!(btf.offset("nope", "a"), None);
    }

    #[test]
    fn test_running_kernel_task_struct() {
        let Some(btf) = Btf::from_sys() else {
            eprintln!("skipped: no /sys/kernel/btf/vmlinux");
            return;
        };
        for (s, f) in [
            ("task_struct", "pid"),
            ("task_struct", "tgid"),
            ("task_struct", "exit_code"),
            ("task_struct", "cgroups"),
            ("css_set", "dfl_cgrp"),
            ("cgroup", "kn"),
            ("kernfs_node", "id"),
            ("task_struct", "se"),
            ("sched_entity", "exec_start"),
        ] {
            assert!(btf.offset(s, f).is_some(), "{s}.{f}");
        }
        assert!(btf.is_pointer("task_struct", "cgroups"));
        // pid and tgid are adjacent ints in every kernel since 2.6.
        assert_eq!(
            btf.offset("task_struct", "tgid"),
            btf.offset("task_struct", "pid").map(|p| p + 4)
        );
    }
}
