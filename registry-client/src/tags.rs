//! The tags of a repository (`GET /v2/NAME/tags/list`, following `Link` pages), for
//! `pull --all-tags`.

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use store::Reference;

use crate::error::{RegistryError, Result};
use crate::limits::{self, BodyError};
use crate::session::Request;
use crate::Client;

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

impl Client {
    /// Every tag of `reference`'s repository, in the registry's order; a repository the
    /// registry does not know is `ManifestUnknown`.
    pub async fn list_tags(&self, reference: &Reference) -> Result<Vec<String>> {
        let session = self.session(&reference.registry)?;
        let repo = &reference.repository;
        let scopes = vec![format!("repository:{repo}:pull")];
        let base = session.base().await?;
        let mut url = format!("{base}/v2/{repo}/tags/list");
        let mut tags = Vec::new();
        loop {
            let req = Request::new(Method::GET, url.clone(), &scopes);
            let resp = session.send(&req).await?;
            if resp.status() == StatusCode::NOT_FOUND {
                return Err(RegistryError::ManifestUnknown {
                    reference: reference.familiar(),
                });
            }
            let resp = session.check(&req, resp, &[StatusCode::OK], repo).await?;
            let next = next_page(resp.headers());
            let bytes = limits::read_bounded(resp, limits::MAX_MANIFEST_SIZE)
                .await
                .map_err(|e| match e {
                    BodyError::TooLarge { limit } => RegistryError::ManifestTooLarge {
                        reference: reference.familiar(),
                        limit: limits::show_size(limit),
                    },
                    BodyError::Transport(source) => RegistryError::Transport {
                        method: "GET".into(),
                        url: url.clone(),
                        source,
                    },
                })?;
            let page: TagList =
                serde_json::from_slice(&bytes).map_err(|e| RegistryError::InvalidManifest {
                    reference: reference.familiar(),
                    reason: format!("tag list: {e}"),
                })?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                Some(path) => url = session.absolute(&path).await?,
                None => return Ok(tags),
            }
        }
    }
}

/// The target of `Link: </v2/…/tags/list?last=x&n=y>; rel="next"`.
fn next_page(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let link = headers.get(reqwest::header::LINK)?.to_str().ok()?;
    if !link.contains("rel=\"next\"") {
        return None;
    }
    let start = link.find('<')? + 1;
    let end = link[start..].find('>')? + start;
    Some(link[start..end].to_string())
}
