//! The few kernel struct offsets podlife needs, read from BTF (/sys/kernel/btf/vmlinux) at load
//! time. A deliberately small BTF reader: type section walk, struct members only.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BtfError {
    #[error("BTF blob is truncated or malformed at byte {at}")]
    Malformed { at: usize },
    #[error("BTF magic {magic:#x} is not 0xeb9f (or a big-endian blob on a little-endian host)")]
    Magic { magic: u16 },
    #[error("BTF has no struct {name}")]
    NoStruct { name: String },
    #[error("struct {strukt} has no member {member} in this kernel's BTF")]
    NoMember { strukt: String, member: String },
}

const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;

struct Reader<'a> {
    data: &'a [u8],
}

impl Reader<'_> {
    fn u32(&self, at: usize) -> Result<u32, BtfError> {
        let b = self
            .data
            .get(at..at + 4)
            .ok_or(BtfError::Malformed { at })?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[derive(Clone, Copy)]
struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
}

struct Type {
    name_off: u32,
    kind: u32,
    members: Vec<Member>,
}

/// Parsed type table: enough to find struct members.
pub struct Btf<'a> {
    strings: &'a [u8],
    /// Index = type id (0 is void).
    types: Vec<Type>,
}

impl<'a> Btf<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Self, BtfError> {
        let r = Reader { data };
        let magic = data
            .get(0..2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .ok_or(BtfError::Malformed { at: 0 })?;
        if magic != 0xeb9f {
            return Err(BtfError::Magic { magic });
        }
        let hdr_len = r.u32(4)? as usize;
        let type_off = hdr_len + r.u32(8)? as usize;
        let type_len = r.u32(12)? as usize;
        let str_off = hdr_len + r.u32(16)? as usize;
        let str_len = r.u32(20)? as usize;
        let strings = data
            .get(str_off..str_off + str_len)
            .ok_or(BtfError::Malformed { at: str_off })?;
        let end = type_off + type_len;
        if end > data.len() {
            return Err(BtfError::Malformed { at: end });
        }
        let mut types = vec![Type {
            name_off: 0,
            kind: 0,
            members: Vec::new(),
        }];
        let mut at = type_off;
        while at < end {
            let name_off = r.u32(at)?;
            let info = r.u32(at + 4)?;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31 == 1;
            at += 12;
            let mut members = Vec::new();
            let extra = match kind {
                1 | 14 | 17 => 4, // INT, VAR, DECL_TAG
                3 => 12,          // ARRAY
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = at + i * 12;
                        let raw = r.u32(m + 8)?;
                        members.push(Member {
                            name_off: r.u32(m)?,
                            type_id: r.u32(m + 4)?,
                            bit_offset: if kind_flag { raw & 0x00ff_ffff } else { raw },
                        });
                    }
                    vlen * 12
                }
                6 | 13 => vlen * 8,   // ENUM, FUNC_PROTO
                15 | 19 => vlen * 12, // DATASEC, ENUM64
                _ => 0,               // PTR, FWD, TYPEDEF, CV, FUNC, FLOAT, TYPE_TAG
            };
            at += extra;
            types.push(Type {
                name_off,
                kind,
                members,
            });
        }
        Ok(Self { strings, types })
    }

    fn name(&self, off: u32) -> &[u8] {
        let s = self.strings.get(off as usize..).unwrap_or(&[]);
        let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
        &s[..end]
    }

    /// Byte offset of `member` in `struct strukt`, looking through anonymous unions and structs.
    pub fn member_offset(&self, strukt: &str, member: &str) -> Result<u32, BtfError> {
        let id = self
            .types
            .iter()
            .position(|t| {
                t.kind == KIND_STRUCT
                    && self.name(t.name_off) == strukt.as_bytes()
                    && !t.members.is_empty()
            })
            .ok_or_else(|| BtfError::NoStruct {
                name: strukt.into(),
            })?;
        self.find(id, member.as_bytes(), 0, 0)
            .map(|bits| bits / 8)
            .ok_or_else(|| BtfError::NoMember {
                strukt: strukt.into(),
                member: member.into(),
            })
    }

    fn find(&self, id: usize, member: &[u8], base_bits: u32, depth: u32) -> Option<u32> {
        let t = self.types.get(id)?;
        for m in &t.members {
            let bits = base_bits + m.bit_offset;
            if self.name(m.name_off) == member {
                return Some(bits);
            }
            // Anonymous members are the inline unions and structs of the kernel's C.
            if m.name_off == 0 && depth < 8 {
                let inner = m.type_id as usize;
                let nested = self
                    .types
                    .get(inner)
                    .is_some_and(|t| t.kind == KIND_STRUCT || t.kind == KIND_UNION);
                if nested {
                    if let Some(found) = self.find(inner, member, bits, depth + 1) {
                        return Some(found);
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob with `struct task_struct { int pid; union { int a; int exit_code; }; }`,
    /// exit_code at byte 8 through the anonymous union at byte 8.
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0task_struct\0pid\0a\0exit_code\0";
        let s = |name: &str| -> u32 {
            let hay = std::str::from_utf8(strings).unwrap();
            hay.find(&format!("\0{name}\0")).unwrap() as u32 + 1
        };
        let mut types = Vec::new();
        let mut push = |v: u32| types.extend_from_slice(&v.to_le_bytes());
        // [1] int
        push(s("int"));
        push(1 << 24);
        push(4);
        push(32);
        // [2] union { int a; int exit_code; }
        push(0);
        push((KIND_UNION << 24) | 2);
        push(4);
        for name in ["a", "exit_code"] {
            push(s(name));
            push(1);
            push(0);
        }
        // [3] struct task_struct { int pid; <anon union> @ 64 bits }
        push(s("task_struct"));
        push((KIND_STRUCT << 24) | 2);
        push(12);
        push(s("pid"));
        push(1);
        push(0);
        push(0);
        push(2);
        push(64);
        let mut out = Vec::new();
        out.extend_from_slice(&0xeb9fu16.to_le_bytes());
        out.push(1);
        out.push(0);
        for v in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&types);
        out.extend_from_slice(strings);
        out
    }

    #[test]
    fn finds_member_through_anonymous_union() {
        let data = blob();
        let btf = Btf::parse(&data).unwrap();
        assert_eq!(btf.member_offset("task_struct", "pid"), Ok(0));
        assert_eq!(btf.member_offset("task_struct", "exit_code"), Ok(8));
        assert!(matches!(
            btf.member_offset("task_struct", "nope"),
            Err(BtfError::NoMember { .. })
        ));
        assert!(matches!(
            btf.member_offset("mm_struct", "x"),
            Err(BtfError::NoStruct { .. })
        ));
    }

    #[test]
    fn rejects_garbage() {
        assert!(Btf::parse(&[1, 2, 3]).is_err());
        let mut data = blob();
        data.truncate(30);
        assert!(Btf::parse(&data).is_err());
    }
}
