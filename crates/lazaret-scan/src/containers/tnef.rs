//! TNEF (`winmail.dat`, `application/ms-tnef`): Outlook's wrapper, which carries a
//! message's attachments inside one attachment. Written here because no maintained
//! crate reads it; the stream is a run of tagged attributes.

use super::{le32, Stopped, Walk};

const SIGNATURE: u32 = 0x223e_9f78;
const LEVEL_ATTACHMENT: u8 = 2;
/// Attribute ids (low word; the high word is the value's type).
const ATT_ATTACH_REND_DATA: u32 = 0x9002;
const ATT_ATTACH_TITLE: u32 = 0x8010;
const ATT_ATTACH_DATA: u32 = 0x800f;

pub(super) fn is(data: &[u8]) -> bool {
    data.len() >= 6 && le32(data, 0) == Some(SIGNATURE)
}

#[derive(Default)]
struct Attachment {
    title: Option<String>,
    data: Option<Vec<u8>>,
}

pub(super) fn open(walk: &mut Walk, path: &str, data: &[u8], depth: usize) -> Result<(), Stopped> {
    // Signature (4) and key (2), then attributes: level (1), id (4), length (4), the
    // value, a checksum (2).
    let mut at = 6;
    let mut attachments: Vec<Attachment> = Vec::new();
    let mut broken = None;
    // Writers may pad the end; fewer bytes than an attribute header are not one.
    while data.len().saturating_sub(at) >= 9 {
        let (Some(&level), Some(id), Some(len)) =
            (data.get(at), le32(data, at + 1), le32(data, at + 5))
        else {
            broken = Some(format!(
                "{path}: attribute header at byte {at} is cut short"
            ));
            break;
        };
        let start = at + 9;
        let Some(value) = data.get(start..start.saturating_add(len as usize)) else {
            broken = Some(format!("{path}: attribute at byte {at} is cut short"));
            break;
        };
        if level == LEVEL_ATTACHMENT {
            match id & 0xffff {
                ATT_ATTACH_REND_DATA => attachments.push(Attachment::default()),
                ATT_ATTACH_TITLE => {
                    let title = value.split(|&b| b == 0).next().unwrap_or_default();
                    current(&mut attachments).title =
                        Some(String::from_utf8_lossy(title).into_owned());
                }
                ATT_ATTACH_DATA => current(&mut attachments).data = Some(value.to_vec()),
                _ => {}
            }
        }
        // The checksum is not verified: a wrong one does not make the data safer.
        at = start + value.len() + 2;
    }
    for (n, attachment) in attachments.into_iter().enumerate() {
        if let Some(content) = attachment.data {
            let name = attachment
                .title
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| format!("attachment{}", n + 1));
            let content = walk.take(path, content, data.len() as u64)?;
            walk.file(path, &name, content, depth)?;
        }
    }
    match broken {
        Some(reason) => Err(Stopped::Broken(reason)),
        None => Ok(()),
    }
}

fn current(attachments: &mut Vec<Attachment>) -> &mut Attachment {
    if attachments.is_empty() {
        attachments.push(Attachment::default());
    }
    attachments.last_mut().expect("one was pushed")
}
