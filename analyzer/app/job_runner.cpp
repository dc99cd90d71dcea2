#include "job_runner.h"

#include <QMetaObject>
#include <QPointer>

#include <exception>

namespace decayfw::app {

JobRunner::JobRunner(QObject* parent) : QObject(parent) { pool_.setMaxThreadCount(1); }

JobRunner::~JobRunner() {
  cancel();
  wait();
}

bool JobRunner::start(const QString& name, std::function<QString()> work, std::function<void(const QString&)> done) {
  if (busy_) return false;
  busy_ = true;
  name_ = name;
  cancel_ = false;
  emit busyChanged(true, name);
  QPointer<JobRunner> self(this);
  pool_.start([self, work = std::move(work), done = std::move(done), this]() mutable {
    QString error;
    try {
      error = work();
    } catch (const std::exception& e) {
      error = QString::fromStdString(e.what());
    } catch (...) {
      error = "unknown error";
    }
    if (!self) return;
    QMetaObject::invokeMethod(this, [this, error, done = std::move(done)]() {
      busy_ = false;
      const QString finished = name_;
      name_.clear();
      if (done) done(error);
      emit busyChanged(false, finished);
    }, Qt::QueuedConnection);
  });
  return true;
}

void JobRunner::post(std::function<void()> fn) { QMetaObject::invokeMethod(this, std::move(fn), Qt::QueuedConnection); }

void JobRunner::cancel() { cancel_ = true; }

void JobRunner::wait() { pool_.waitForDone(); }

}  // namespace decayfw::app
