// Runs engine work off the UI thread, one job at a time, with a cancel flag the job polls.
// Results and streamed updates reach the UI through queued calls, so widgets are only touched on
// the UI thread.
#pragma once

#include <QObject>
#include <QString>
#include <QThreadPool>

#include <atomic>
#include <functional>

namespace decayfw::app {

class JobRunner : public QObject {
  Q_OBJECT

 public:
  explicit JobRunner(QObject* parent = nullptr);
  ~JobRunner() override;  // cancels and waits for a running job

  bool busy() const { return busy_; }
  QString currentJob() const { return name_; }
  const std::atomic<bool>* cancelFlag() const { return &cancel_; }

  // `work` runs on the worker thread and returns an error message ("" on success); `done` runs on
  // the UI thread with it. Returns false (and does nothing) while another job runs.
  bool start(const QString& name, std::function<QString()> work, std::function<void(const QString&)> done);
  // Posts `fn` to run on the UI thread (for streamed updates from inside `work`).
  void post(std::function<void()> fn);
  void cancel();
  void wait();

 signals:
  void busyChanged(bool busy, const QString& name);

 private:
  QThreadPool pool_;
  std::atomic<bool> cancel_{false};
  bool busy_ = false;
  QString name_;
};

}  // namespace decayfw::app
