//! Single manifests and blobs by reference, for callers that compose their own artifacts
//! (the build cache of `--cache-to type=registry` / `--cache-from`): fetch a manifest
//! without tagging anything, download one blob into the store.

use bytes::Bytes;
use store::{Descriptor, Digest, Lease, Reference, Store};

use crate::error::{RegistryError, Result};
use crate::progress::Bar;
use crate::pull::{fetch_manifest, manifest_ref};
use crate::transfer;
use crate::Client;

/// A manifest as the registry holds it.
#[derive(Debug, Clone)]
pub struct RemoteManifest {
    pub bytes: Bytes,
    pub media_type: String,
    pub digest: Digest,
}

impl Client {
    /// The manifest `reference` names (its tag, or digest), verified against its digest;
    /// `None` when the registry has no such manifest. Nothing is stored.
    pub async fn fetch_manifest(&self, reference: &Reference) -> Result<Option<RemoteManifest>> {
        let session = self.session(&reference.registry)?;
        let repo = &reference.repository;
        let scopes = vec![format!("repository:{repo}:pull")];
        match fetch_manifest(
            &session,
            repo,
            &manifest_ref(reference),
            reference.digest.as_ref(),
            &scopes,
            &reference.familiar(),
        )
        .await
        {
            Ok(m) => Ok(Some(RemoteManifest {
                bytes: m.bytes,
                media_type: m.media_type,
                digest: m.digest,
            })),
            Err(RegistryError::ManifestUnknown { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Downloads `desc` from `reference`'s repository into the store (verified, then
    /// recorded for GC) unless the store has it. `lease` covers it from before it is
    /// looked for until the caller's record refers to it.
    pub async fn fetch_blob(
        &self,
        store: &Store,
        lease: &Lease,
        reference: &Reference,
        desc: &Descriptor,
    ) -> Result<()> {
        let session = self.session(&reference.registry)?;
        let repo = &reference.repository;
        let scopes = vec![format!("repository:{repo}:pull")];
        let got =
            transfer::download(&session, store, lease, repo, desc, &scopes, &Bar::hidden()).await?;
        if let Some(committed) = got {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.record_blobs(&[committed]))
                .await
                .expect("the record task does not panic")?;
        }
        Ok(())
    }
}
